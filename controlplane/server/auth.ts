import type { IncomingMessage } from "node:http";
import type { TLSSocket } from "node:tls";
import { ApiError } from "../../api/status.ts";
import type { UserInfo } from "../authz.ts";
import type { ServiceAccountTokens } from "../serviceaccount/tokens.ts";

export const ANONYMOUS: UserInfo = { name: "system:anonymous", groups: ["system:unauthenticated"] };

export function unauthorized(): ApiError {
  return new ApiError(
    401,
    "Unauthorized",
    "Unauthorized: a client certificate signed by the cluster CA is required",
  );
}

/** Client-certificate authentication: CN is the user, O the groups (as kube-apiserver's x509 authenticator). */
export class CertAuthenticator {
  // The certificate is fixed for the connection's life: decode it once, not on every request of
  // a keep-alive connection (getPeerCertificate builds a fresh object each time).
  private readonly users = new WeakMap<TLSSocket, UserInfo | undefined>();

  authenticate(req: IncomingMessage): UserInfo | undefined {
    const sock = req.socket as TLSSocket;
    if (!sock.authorized) return undefined;
    if (this.users.has(sock)) return this.users.get(sock);
    const cert = sock.getPeerCertificate();
    const cn = cert?.subject?.CN;
    const o = cert?.subject?.O;
    const groups = o === undefined ? [] : Array.isArray(o) ? o : [o];
    const user = cn
      ? { name: Array.isArray(cn) ? cn[0]! : cn, groups: [...groups, "system:authenticated"] }
      : undefined;
    this.users.set(sock, user);
    return user;
  }
}

/** What a token's validity depends on besides its signature: its service account (and pod) still there. */
export interface TokenLookups {
  /** The uid of the ServiceAccount, undefined when there is none. */
  serviceAccountUid(namespace: string, name: string): Promise<string | undefined>;
  /** The uid of the Pod, undefined when there is none or it is being deleted. */
  podUid(namespace: string, name: string): Promise<string | undefined>;
}

/** `Authorization: Bearer` is present but names nobody: upstream's bare 401. */
export function badToken(): ApiError {
  return new ApiError(401, "Unauthorized", "Unauthorized");
}

/**
 * Service-account bearer tokens (kube-apiserver's serviceaccount.JWTTokenAuthenticator with
 * --service-account-lookup): a valid signature, issuer, audience and lifetime, and a service
 * account (and bound pod) that still exist with the uids the token names.
 */
export class BearerAuthenticator {
  constructor(
    private readonly tokens: ServiceAccountTokens,
    private readonly lookups: TokenLookups,
  ) {}

  /** The header's token, or undefined when the request carries none. */
  static tokenOf(req: IncomingMessage): string | undefined {
    const h = req.headers.authorization;
    if (typeof h !== "string") return undefined;
    const m = /^bearer\s+(\S+)\s*$/i.exec(h);
    return m ? m[1] : undefined;
  }

  /** The token's user; throws 401 when the token is not one this server accepts. */
  async authenticate(token: string): Promise<UserInfo> {
    const r = this.tokens.verify(token);
    if (!r.ok) throw badToken();
    const k = r.claims["kubernetes.io"];
    const ns = k.namespace;
    const uid = await this.lookups.serviceAccountUid(ns, k.serviceaccount.name);
    if (uid === undefined || (k.serviceaccount.uid && uid !== k.serviceaccount.uid)) throw badToken();
    if (k.pod) {
      const podUid = await this.lookups.podUid(ns, k.pod.name);
      if (podUid === undefined || (k.pod.uid && podUid !== k.pod.uid)) throw badToken();
    }
    return {
      name: `system:serviceaccount:${ns}:${k.serviceaccount.name}`,
      groups: ["system:serviceaccounts", `system:serviceaccounts:${ns}`, "system:authenticated"],
    };
  }
}
