/**
 * A small typed client for lab-server (and any Kubernetes API server) over HTTPS with client
 * certificates: get, list, watch, create, update, updateStatus, patch, delete, bind.
 * Resources are named by plural (`"pods"`, `"deployments"`, ...) and typed with the
 * @kubernetes/client-node models. `watch()` is an async iterator of events that ends when the
 * server closes the stream; a 410 (history compacted) arrives as an ApiStatusError with code 410,
 * after which the caller relists. Failures throw ApiStatusError carrying the server's Status.
 *
 *   const c = await LabClient.fromKubeconfig(path);
 *   const pods = await c.list("pods", { namespace: "default", labelSelector: "app=web" });
 *   for await (const ev of c.watch("pods", { resourceVersion: pods.metadata.resourceVersion })) ...
 */
import { Agent, request, type RequestOptions } from "node:https";
import { createSecureContext } from "node:tls";
import type { IncomingMessage } from "node:http";
import type { V1Status } from "@kubernetes/client-node";
import { deadlineController, untilAborted } from "../lib/deadline.ts";
import {
  ApiStatusError,
  type ClientConfig,
  type DeleteOptions,
  type ListOptions,
  type ObjectList,
  type PatchType,
  type Plural,
  type ResourceTypes,
  type WatchEvent,
  type WatchOptions,
} from "./client-types.ts";
import { readKubeconfig } from "./kubeconfig.ts";
import { query, resourcePath } from "./resource-path.ts";

// The client's types, its paths and kubeconfig reading live in their own files; importers of
// api/client.ts keep one place to import from.
export * from "./client-types.ts";
export { readKubeconfig } from "./kubeconfig.ts";

const PATCH_TYPES: Record<PatchType, string> = {
  merge: "application/merge-patch+json",
  json: "application/json-patch+json",
  strategic: "application/strategic-merge-patch+json",
};

export class LabClient {
  private readonly agent: Agent;
  private readonly watchAgent: Agent;
  private readonly url: URL;

  constructor(private readonly config: ClientConfig) {
    this.url = new URL(config.server);
    // One TLS context for every connection: given ca/cert/key, the Agent would parse them again
    // for each new connection (a noticeable cost on a slow TCG node that reconnects often).
    const secureContext = createSecureContext({ ca: config.ca, cert: config.cert, key: config.key });
    // Calls share a bounded pool of kept-alive connections: a burst of 500 creates used to open
    // 500 TLS connections (a handshake each), idle ones closed by the server and opened again by
    // the next burst. Watches hold their connection for minutes, so they get a pool of their own
    // and can never starve the calls.
    this.agent = new Agent({
      secureContext,
      keepAlive: true,
      maxSockets: config.maxSockets ?? 64,
      maxFreeSockets: config.maxSockets ?? 64,
      scheduling: "lifo",
    });
    this.watchAgent = new Agent({ secureContext, keepAlive: true });
  }

  /** Reads a kubeconfig's current context (certificate files or inline *-data). */
  static async fromKubeconfig(path: string): Promise<LabClient> {
    return new LabClient(await readKubeconfig(path));
  }

  close(): void {
    this.agent.destroy();
    this.watchAgent.destroy();
  }

  private open(
    method: string,
    path: string,
    body?: string,
    contentType = "application/json",
    signal?: AbortSignal,
    timeoutMs?: number,
    agent = this.agent,
  ): Promise<IncomingMessage> {
    const opts: RequestOptions = {
      method,
      host: this.url.hostname,
      port: this.url.port || 443,
      path,
      agent,
      headers: {
        Accept: "application/json",
        ...(body !== undefined
          ? { "Content-Type": contentType, "Content-Length": Buffer.byteLength(body) }
          : {}),
      },
    };
    if (signal) opts.signal = signal;
    return new Promise((resolve, reject) => {
      const req = request(opts, resolve);
      req.on("error", reject);
      if (timeoutMs)
        req.setTimeout(timeoutMs, () =>
          req.destroy(new Error(`${method} ${path} timed out after ${timeoutMs} ms`)),
        );
      if (body !== undefined) req.write(body);
      req.end();
    });
  }

  /**
   * One request with one deadline over all of it: connection, TLS, the answer and its whole body.
   * A server that accepts the connection and never answers fails at timeoutMs, not when TCP gives up.
   */
  private async call<T>(method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
    const timeoutMs = this.config.timeoutMs ?? 30_000;
    const deadline = deadlineController(
      timeoutMs,
      () => `${method} ${path}: no answer within ${timeoutMs} ms`,
    );
    let text: string;
    let res: IncomingMessage;
    try {
      res = await untilAborted(
        this.open(
          method,
          path,
          body === undefined ? undefined : JSON.stringify(body),
          contentType,
          deadline.signal,
          timeoutMs,
        ),
        deadline.signal,
      );
      const r = res;
      text = await untilAborted(
        (async () => {
          const chunks: Buffer[] = [];
          for await (const c of r) chunks.push(c as Buffer);
          return Buffer.concat(chunks).toString("utf8");
        })(),
        deadline.signal,
      );
    } finally {
      deadline.clear();
    }
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    const code = res.statusCode ?? 0;
    if (code >= 400) {
      const st = parsed as V1Status | undefined;
      throw new ApiStatusError(code, st?.reason ?? "Unknown", st ?? { message: text || `HTTP ${code}` });
    }
    return parsed as T;
  }

  /** Any API path the typed methods do not cover (a kind's scale, metrics.k8s.io): JSON in and out. */
  request<T>(method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
    return this.call(method, path, body, contentType);
  }

  get<P extends Plural>(plural: P, name: string, namespace?: string): Promise<ResourceTypes[P]> {
    return this.call("GET", resourcePath(plural, namespace, name));
  }

  list<P extends Plural>(plural: P, opts: ListOptions = {}): Promise<ObjectList<ResourceTypes[P]>> {
    const q = query({
      labelSelector: opts.labelSelector,
      fieldSelector: opts.fieldSelector,
      limit: opts.limit,
      continue: opts.continue,
    });
    return this.call("GET", resourcePath(plural, opts.namespace) + q);
  }

  create<P extends Plural>(plural: P, obj: ResourceTypes[P], namespace?: string): Promise<ResourceTypes[P]> {
    const ns = namespace ?? (obj as { metadata?: { namespace?: string } }).metadata?.namespace;
    return this.call("POST", resourcePath(plural, ns), obj);
  }

  /** Replaces the object; fails with 409 when metadata.resourceVersion is stale. */
  update<P extends Plural>(plural: P, obj: ResourceTypes[P]): Promise<ResourceTypes[P]> {
    const m = (obj as { metadata?: { name?: string; namespace?: string } }).metadata;
    return this.call("PUT", resourcePath(plural, m?.namespace, m?.name), obj);
  }

  updateStatus<P extends Plural>(plural: P, obj: ResourceTypes[P]): Promise<ResourceTypes[P]> {
    const m = (obj as { metadata?: { name?: string; namespace?: string } }).metadata;
    return this.call("PUT", resourcePath(plural, m?.namespace, m?.name, "status"), obj);
  }

  patch<P extends Plural>(
    plural: P,
    name: string,
    patch: unknown,
    opts: { namespace?: string; type?: PatchType; subresource?: "status" | "scale" } = {},
  ): Promise<ResourceTypes[P]> {
    return this.call(
      "PATCH",
      resourcePath(plural, opts.namespace, name, opts.subresource),
      patch,
      PATCH_TYPES[opts.type ?? "merge"],
    );
  }

  delete<P extends Plural>(
    plural: P,
    name: string,
    namespace?: string,
    opts: DeleteOptions = {},
  ): Promise<ResourceTypes[P] | V1Status> {
    return this.call("DELETE", resourcePath(plural, namespace, name), {
      kind: "DeleteOptions",
      apiVersion: "v1",
      ...opts,
    });
  }

  /** POST serviceaccounts/NAME/token (authentication.k8s.io/v1 TokenRequest): a service-account token. */
  async createToken(
    namespace: string,
    serviceAccount: string,
    spec: {
      audiences?: string[];
      expirationSeconds?: number;
      boundObjectRef?: { kind: string; apiVersion?: string; name: string; uid?: string };
    },
  ): Promise<{ token: string; expirationTimestamp: string }> {
    const r = await this.call<{ status?: { token?: string; expirationTimestamp?: string } }>(
      "POST",
      resourcePath("serviceaccounts", namespace, serviceAccount, "token"),
      { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec },
    );
    return { token: r.status?.token ?? "", expirationTimestamp: r.status?.expirationTimestamp ?? "" };
  }

  /** Binds a pod to a node through pods/binding (what the scheduler does). */
  async bind(namespace: string, pod: string, node: string): Promise<void> {
    await this.call("POST", resourcePath("pods", namespace, pod, "binding"), {
      apiVersion: "v1",
      kind: "Binding",
      metadata: { name: pod, namespace },
      target: { apiVersion: "v1", kind: "Node", name: node },
    });
  }

  /** Streams watch events; ends when the server ends the watch or the signal aborts. */
  async *watch<P extends Plural>(
    plural: P,
    opts: WatchOptions = {},
  ): AsyncGenerator<WatchEvent<ResourceTypes[P]>> {
    const q = query({
      watch: true,
      resourceVersion: opts.resourceVersion,
      labelSelector: opts.labelSelector,
      fieldSelector: opts.fieldSelector,
      allowWatchBookmarks: opts.allowWatchBookmarks,
      timeoutSeconds: opts.timeoutSeconds,
    });
    // The answer's headers come within the call timeout; a watch the server was told to end after
    // timeoutSeconds is dead if it is still open well after that (a master powered off mid-watch).
    const openMs = this.config.timeoutMs ?? 30_000;
    const lifetime = deadlineController(
      opts.timeoutSeconds !== undefined ? opts.timeoutSeconds * 1000 + WATCH_GRACE_MS : Infinity,
      () => `watch ${plural}: still open ${WATCH_GRACE_MS / 1000} s after its timeoutSeconds`,
      opts.signal,
    );
    const headers = deadlineController(
      openMs,
      () => `watch ${plural}: no answer within ${openMs} ms`,
      lifetime.signal,
    );
    let res: IncomingMessage;
    try {
      res = await untilAborted(
        this.open(
          "GET",
          resourcePath(plural, opts.namespace) + q,
          undefined,
          undefined,
          headers.signal,
          undefined,
          this.watchAgent,
        ),
        headers.signal,
      );
    } catch (err) {
      lifetime.clear();
      if (opts.signal?.aborted) return;
      throw err;
    } finally {
      headers.clear();
    }
    const r = res;
    const endStream = () => r.destroy(lifetime.signal.reason as Error);
    lifetime.signal.addEventListener("abort", endStream, { once: true });
    if ((res.statusCode ?? 0) >= 400) {
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      const st = JSON.parse(Buffer.concat(chunks).toString() || "{}") as V1Status;
      throw new ApiStatusError(res.statusCode ?? 0, st.reason ?? "Unknown", st);
    }
    let buf = "";
    try {
      for await (const chunk of res) {
        buf += (chunk as Buffer).toString("utf8");
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          const ev = JSON.parse(line) as { type: string; object: unknown };
          if (ev.type === "ERROR") {
            const st = ev.object as V1Status;
            throw new ApiStatusError(st.code ?? 500, st.reason ?? "Unknown", st);
          }
          yield ev as WatchEvent<ResourceTypes[P]>;
        }
      }
    } catch (err) {
      if (opts.signal?.aborted) return;
      throw err;
    } finally {
      lifetime.signal.removeEventListener("abort", endStream);
      lifetime.clear();
      res.destroy();
    }
  }
}

/** How long past its timeoutSeconds a watch may stay open before the client ends it as dead. */
export const WATCH_GRACE_MS = 30_000;
