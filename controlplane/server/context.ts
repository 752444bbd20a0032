import type { IncomingMessage } from "node:http";
import type { Attributes, UserInfo } from "../authz.ts";
import type { KubeletClientTls } from "../node-proxy.ts";
import type { KObject, Registry } from "../registry.ts";
import type { ServiceAccountTokens } from "../serviceaccount/tokens.ts";
import type { Reply } from "./reply.ts";
import type { Route, Verb } from "./request-info.ts";

/** Everything one resource request's handler works with. */
export interface RequestContext {
  req: IncomingMessage;
  reply: Reply;
  url: URL;
  q: URLSearchParams;
  user: UserInfo;
  route: Route;
  verb: Verb;
  attrs: Attributes;
  dryRun: boolean;
  registry: Registry;
  /** The node whose request is allowed only for some objects (Decision.node), else undefined. */
  node: string | undefined;
  /** NodeRestriction: throws 403 when a node may not touch this object (no-op for other users). */
  admit(obj: KObject): Promise<void>;
  /** Admission of the object about to be written (RBAC's escalation checks); a no-op for other kinds. */
  admitNew(obj: KObject): Promise<void>;
  server: {
    kubeletClient: KubeletClientTls | undefined;
    bookmarkIntervalMs: number;
    /** Ends of the running watches, so stop() can end them. */
    watches: Set<() => void>;
    /** Service-account token signer (serviceaccounts/token). */
    tokens: ServiceAccountTokens | undefined;
  };
}

export function wantsTable(req: IncomingMessage): boolean {
  return /as=Table/.test(req.headers.accept ?? "");
}
