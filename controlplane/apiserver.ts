import { createServer as createHttpsServer, type Server } from "node:https";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from "node:http";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import type { V1Node, V1Pod } from "@kubernetes/client-node";
import { parse as parseYaml } from "yaml";
import { decodeKubernetesProtobuf } from "../api/protobuf.ts";
import { jsonPatch, mergePatch, PatchError, strategicMerge } from "../api/patch.ts";
import { findResource, groupVersion, type ResourceInfo } from "../api/resources.ts";
import {
  parseFieldSelector,
  parseLabelSelector,
  selectorObjectToString,
  type SelectorObject,
} from "../api/selectors.ts";
import { ApiError, badRequest, conflict, notFound } from "../api/status.ts";
import { toTable } from "../api/table.ts";
import { authorize, type UserInfo } from "./authz.ts";
import { discovery, SERVER_VERSION } from "./discovery.ts";
import { openApiV2, openApiV3Index, openApiV3Group } from "./openapi.ts";
import {
  agentPath,
  assertLogsAvailable,
  assertRunning,
  nodeTarget,
  proxyLogs,
  proxyUpgrade,
  rejectUpgrade,
  type KubeletClientTls,
} from "./node-proxy.ts";
import { Registry, type DeleteOptions, type KObject, type Selectors, type WatchEvent } from "./registry.ts";
import { EtcdReadiness } from "./etcd-readiness.ts";
import { ServiceIpAllocator } from "./service-ips.ts";
import type { EtcdStore } from "./storage/etcd-store.ts";

export const MAX_BODY_BYTES = 3 * 1024 * 1024;
const HEALTH_PATHS = new Set(["/healthz", "/livez", "/readyz"]);
const PUBLIC_PATHS = new Set([...HEALTH_PATHS, "/version"]);

export interface ApiServerOptions {
  store: EtcdStore;
  /** Service CIDR for ClusterIPs; its first address is the `kubernetes` service's. */
  serviceClusterIpRange: string;
  advertiseAddress: string;
  securePort: number;
  tls: { cert: Buffer; key: Buffer; clientCa: Buffer };
  /** Interval of watch bookmarks when a client allows them (Kubernetes: about a minute). */
  bookmarkIntervalMs?: number;
  /** etcd history is compacted to the revision of one interval ago (Kubernetes: 5 minutes); 0 = never. */
  compactionIntervalMs?: number;
  /** lab-server's identity towards the node agents (pods/log, pods/exec); without it those answer 503. */
  kubeletClient?: KubeletClientTls;
}

interface Route {
  info: ResourceInfo;
  namespace?: string;
  name?: string;
  subresource?: string;
}

/** Parses /api/v1/... and /apis/G/V/... resource paths. */
export function parseResourcePath(path: string): Route | undefined {
  const segs = path
    .split("/")
    .filter((s) => s !== "")
    .map(decodeURIComponent);
  let group: string;
  let version: string;
  let rest: string[];
  if (segs[0] === "api" && segs.length >= 3) {
    group = "";
    version = segs[1]!;
    rest = segs.slice(2);
  } else if (segs[0] === "apis" && segs.length >= 4) {
    group = segs[1]!;
    version = segs[2]!;
    rest = segs.slice(3);
  } else return undefined;
  let namespace: string | undefined;
  if (rest[0] === "namespaces" && rest.length >= 3 && findResource(group, version, rest[2]!)?.namespaced) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const info = findResource(group, version, rest[0]!);
  if (!info || rest.length > 3) return undefined;
  if (info.namespaced !== (namespace !== undefined) && rest.length > 1) return undefined;
  const route: Route = { info };
  if (namespace !== undefined) route.namespace = namespace;
  if (rest[1] !== undefined) route.name = rest[1];
  if (rest[2] !== undefined) route.subresource = rest[2];
  return route;
}

function send(res: ServerResponse, code: number, body: unknown): void {
  const data = JSON.stringify(body);
  res.writeHead(code, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data) });
  res.end(data);
}

function sendError(res: ServerResponse, err: ApiError): void {
  send(res, err.code, err.toStatus());
}

function success(code = 200, details?: Record<string, unknown>): Record<string, unknown> {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Success",
    code,
    ...(details ? { details } : {}),
  };
}

/** Reads the body; past the limit it keeps draining (so the client gets the 413, not a reset). */
function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on("error", reject);
    req.on("end", () => {
      if (size > MAX_BODY_BYTES) {
        reject(
          new ApiError(
            413,
            "RequestEntityTooLarge",
            `request body too large: limit is ${MAX_BODY_BYTES} bytes`,
          ),
        );
      } else resolve(Buffer.concat(chunks));
    });
  });
}

function parseBody(raw: Buffer, contentType: string): unknown {
  if (/protobuf/.test(contentType)) {
    try {
      return decodeKubernetesProtobuf(raw);
    } catch (err) {
      throw new ApiError(415, "UnsupportedMediaType", (err as Error).message);
    }
  }
  if (/cbor/.test(contentType)) {
    throw new ApiError(
      415,
      "UnsupportedMediaType",
      `the body's content type "${contentType}" is not supported: lab-server accepts JSON and YAML`,
    );
  }
  const text = raw.toString("utf8");
  if (text.trim() === "") return undefined;
  try {
    return /yaml/.test(contentType) ? parseYaml(text) : JSON.parse(text);
  } catch (err) {
    throw badRequest(
      `the request body is not valid ${/yaml/.test(contentType) ? "YAML" : "JSON"}: ${(err as Error).message}`,
    );
  }
}

function wantsTable(req: IncomingMessage): boolean {
  return /as=Table/.test(req.headers.accept ?? "");
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The Kubernetes-compatible REST API over etcd (HTTPS with client-certificate authentication). */
export class ApiServer {
  readonly registry: Registry;
  private server: Server | undefined;
  private healthServer: HttpServer | undefined;
  private readonly watches = new Set<() => void>();
  /** Every TCP connection of the API port, also those mid-handshake or upgraded (exec, logs -f). */
  private readonly sockets = new Set<Duplex>();
  private compactionTimer: NodeJS.Timeout | undefined;
  private readonly readiness: EtcdReadiness;
  private defaultsPending: string | undefined = "default objects not created yet";
  private defaultsRetry: NodeJS.Timeout | undefined;
  private stopping = false;

  constructor(private readonly opts: ApiServerOptions) {
    this.registry = new Registry(opts.store, new ServiceIpAllocator(opts.store, opts.serviceClusterIpRange));
    this.readiness = new EtcdReadiness(opts.store);
  }

  /**
   * Listens at once; nothing before `listen` waits on etcd. The default objects (namespaces, the
   * `kubernetes` Service and Endpoints) are ensured in the background, retried until they are, and
   * /readyz answers 503 until then (and while etcd does not answer): a restart is serving within the
   * time it takes to load, and an etcd that is slow or without quorum no longer makes start() fail
   * and systemd restart the whole process again.
   */
  async start(host: string, port: number): Promise<number> {
    const server = createHttpsServer(
      {
        cert: this.opts.tls.cert,
        key: this.opts.tls.key,
        ca: this.opts.tls.clientCa,
        requestCert: true,
        rejectUnauthorized: false,
      },
      (req, res) => void this.handle(req, res),
    );
    server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on("error", () => undefined);
      this.handleUpgrade(req, socket, head).catch((err: unknown) =>
        rejectUpgrade(
          socket,
          err instanceof ApiError
            ? err
            : new ApiError(500, "InternalError", `Internal error occurred: ${(err as Error).message}`),
        ),
      );
    });
    server.on("connection", (socket: Duplex) => {
      this.sockets.add(socket);
      socket.once("close", () => this.sockets.delete(socket));
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    this.startCompaction();
    // Already serving; start() returns after the first etcd probe and the first attempt at the
    // defaults (each bounded by the etcd client's deadline), so a healthy etcd gives a ready server.
    let firstAttempt!: () => void;
    const attempted = new Promise<void>((resolve) => (firstAttempt = resolve));
    void this.ensureDefaultsUntilDone(firstAttempt);
    await Promise.all([this.readiness.start(), attempted]);
    const addr = server.address();
    return typeof addr === "object" && addr ? addr.port : port;
  }

  /**
   * Plain HTTP on a local address, health paths only: for checks that run every few seconds (keepalived),
   * where a TLS handshake per check costs a slow master more than the check is worth.
   */
  async startHealth(host: string, port: number): Promise<number> {
    const server = createHttpServer((req, res) => {
      const path = new URL(req.url ?? "/", "http://localhost").pathname.replace(/\/+$/, "") || "/";
      if (req.method !== "GET" || !HEALTH_PATHS.has(path)) {
        res.writeHead(404, { "Content-Type": "text/plain" });
        res.end("only /healthz, /livez and /readyz are served here");
        return;
      }
      this.health(path, res).catch((err: unknown) =>
        sendError(res, err instanceof ApiError ? err : new ApiError(500, "InternalError", String(err))),
      );
    });
    this.healthServer = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    const addr = server.address();
    return typeof addr === "object" && addr ? addr.port : port;
  }

  /** Retries ensureDefaults (1 s, doubling to 10 s) until it succeeds or the server stops. */
  private async ensureDefaultsUntilDone(attempted: () => void): Promise<void> {
    for (let delay = 1000; !this.stopping; delay = Math.min(delay * 2, 10_000)) {
      try {
        await this.registry.ensureDefaults(this.opts.advertiseAddress, this.opts.securePort);
        this.defaultsPending = undefined;
        return;
      } catch (err) {
        this.defaultsPending = `default objects not created yet: ${(err as Error).message}`;
      } finally {
        attempted();
      }
      await new Promise<void>((resolve) => {
        this.defaultsRetry = setTimeout(resolve, delay);
      });
    }
  }

  private async health(path: string, res: ServerResponse): Promise<void> {
    if (path === "/readyz") {
      // From the probe loop's verdict: a check must not wait for (or add) an etcd round trip.
      const why = this.defaultsPending ?? this.readiness.notReady();
      if (why) throw new ApiError(503, "ServiceUnavailable", why);
    }
    res.writeHead(200, { "Content-Type": "text/plain" });
    res.end("ok");
  }

  /** Compacts etcd to the revision seen one interval earlier, so watchers get a full interval to resume. */
  private startCompaction(): void {
    const interval = this.opts.compactionIntervalMs ?? 5 * 60_000;
    if (interval <= 0) return;
    let previous = 0;
    this.compactionTimer = setInterval(() => {
      void (async () => {
        const current = await this.opts.store.revision();
        if (previous > 0) await this.opts.store.compact(previous);
        previous = current;
      })().catch(() => undefined);
    }, interval);
    this.compactionTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.defaultsRetry);
    clearInterval(this.compactionTimer);
    this.readiness.stop();
    const health = this.healthServer;
    if (health) {
      health.closeAllConnections();
      await new Promise<void>((resolve) => health.close(() => resolve()));
    }
    for (const end of this.watches) end();
    await this.registry.close();
    const server = this.server;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // Every TCP connection, not closeAllConnections(): that one knows only connections past the TLS
    // handshake and not upgraded, and server.close() would wait for the others (an exec stream).
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private authenticate(req: IncomingMessage): UserInfo | undefined {
    const sock = req.socket as TLSSocket;
    if (!sock.authorized) return undefined;
    // The certificate is fixed for the connection's life: decode it once, not on every request
    // of a keep-alive connection (getPeerCertificate builds a fresh object each time).
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

  private readonly users = new WeakMap<TLSSocket, UserInfo | undefined>();

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? "/", "https://localhost");
      const user = this.authenticate(req);
      // Health and version are public, as with Kubernetes' system:public-info-viewer, so load
      // balancers and keepalived can check an apiserver without a client certificate.
      if (!user && PUBLIC_PATHS.has(url.pathname)) {
        await this.route(req, res, url, { name: "system:anonymous", groups: ["system:unauthenticated"] });
        return;
      }
      if (!user) {
        throw new ApiError(
          401,
          "Unauthorized",
          "Unauthorized: a client certificate signed by the cluster CA is required",
        );
      }
      await this.route(req, res, url, user);
    } catch (err) {
      if (res.headersSent) {
        res.end();
        return;
      }
      if (err instanceof ApiError) sendError(res, err);
      else if (err instanceof PatchError) sendError(res, new ApiError(422, "Invalid", err.message));
      else
        sendError(
          res,
          new ApiError(500, "InternalError", `Internal error occurred: ${(err as Error).message}`),
        );
    }
  }

  private async route(req: IncomingMessage, res: ServerResponse, url: URL, user: UserInfo): Promise<void> {
    const path = url.pathname.replace(/\/+$/, "") || "/";
    const method = req.method ?? "GET";
    if (HEALTH_PATHS.has(path)) return this.health(path, res);
    if (path === "/version") return send(res, 200, SERVER_VERSION);
    if (path === "/openapi/v2") return send(res, 200, openApiV2());
    if (path === "/openapi/v3") return send(res, 200, openApiV3Index());
    if (path.startsWith("/openapi/v3/")) {
      const doc = openApiV3Group(path.slice("/openapi/v3/".length));
      if (!doc) throw new ApiError(404, "NotFound", `no OpenAPI document for ${path}`);
      return send(res, 200, doc);
    }
    const disc = discovery(path, `${this.opts.advertiseAddress}:${this.opts.securePort}`);
    if (disc) {
      if (method !== "GET")
        throw new ApiError(405, "MethodNotAllowed", `${method} is not allowed on ${path}`);
      return send(res, 200, disc);
    }
    const route = parseResourcePath(path);
    if (!route)
      throw new ApiError(
        404,
        "NotFound",
        `the server could not find the requested resource (${method} ${path})`,
      );
    await this.serveResource(req, res, url, user, route, method);
  }

  /** The pod, its node agent and the TLS identity to reach it, or the Status that says why not. */
  private async podTarget(r: Route, q: URLSearchParams) {
    const pod = (await this.registry.get(r.info, r.namespace, r.name!)) as V1Pod;
    const nodeName = pod.spec?.nodeName;
    const nodes = findResource("", "v1", "nodes")!;
    const node = nodeName
      ? ((await this.registry.get(nodes, undefined, nodeName).catch(() => undefined)) as V1Node | undefined)
      : undefined;
    const target = nodeTarget(pod, node, q.get("container"));
    const tls = this.opts.kubeletClient;
    if (!tls)
      throw new ApiError(
        503,
        "ServiceUnavailable",
        `pods/${r.subresource} needs lab-server's kubelet-client certificate (--kubelet-client-certificate, --kubelet-client-key)`,
      );
    return { pod, target, tls };
  }

  /** WebSocket upgrades: pods/exec goes through to the node agent; nothing else upgrades. */
  private async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const user = this.authenticate(req);
    if (!user)
      throw new ApiError(
        401,
        "Unauthorized",
        "Unauthorized: a client certificate signed by the cluster CA is required",
      );
    const url = new URL(req.url ?? "/", "https://localhost");
    const r = parseResourcePath(url.pathname.replace(/\/+$/, ""));
    if (
      !r ||
      r.info.kind !== "Pod" ||
      !r.name ||
      !["exec", "attach", "portforward"].includes(r.subresource ?? "")
    )
      throw new ApiError(400, "BadRequest", `${url.pathname} cannot be upgraded: only pods/exec streams`);
    const decision = authorize(user, {
      verb: "create",
      info: r.info,
      subresource: r.subresource,
      namespace: r.namespace,
      name: r.name,
    });
    if (!decision.allowed) throw new ApiError(403, "Forbidden", decision.reason);
    if (r.subresource !== "exec") {
      await this.registry.get(r.info, r.namespace, r.name);
      throw new ApiError(501, "NotImplemented", `pods/${r.subresource} is not supported by lab-server`);
    }
    // Validation first: kubectl retries a refused WebSocket upgrade over SPDY, and shows that answer.
    const { pod, target, tls } = await this.podTarget(r, url.searchParams);
    assertRunning(pod, target.container);
    if ((req.headers.upgrade ?? "").toLowerCase() !== "websocket")
      throw new ApiError(
        400,
        "BadRequest",
        `upgrade to "${req.headers.upgrade}" is not supported: pods/exec speaks WebSocket (v5.channel.k8s.io, v4.channel.k8s.io), not SPDY`,
      );
    await proxyUpgrade(tls, target, agentPath("exec", pod, target, url.searchParams), req, socket, head);
  }

  private async serveResource(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    user: UserInfo,
    r: Route,
    method: string,
  ): Promise<void> {
    const q = url.searchParams;
    const watch = q.get("watch") === "true" || q.get("watch") === "1";
    const verb =
      method === "GET"
        ? r.name
          ? "get"
          : watch
            ? "watch"
            : "list"
        : method === "POST"
          ? "create"
          : method === "PUT"
            ? "update"
            : method === "PATCH"
              ? "patch"
              : method === "DELETE"
                ? r.name
                  ? "delete"
                  : "deletecollection"
                : undefined;
    if (!verb) throw new ApiError(405, "MethodNotAllowed", `method ${method} is not supported`);
    const decision = authorize(user, {
      verb,
      info: r.info,
      subresource: r.subresource,
      namespace: r.namespace,
      name: r.name,
    });
    if (!decision.allowed) throw new ApiError(403, "Forbidden", decision.reason);
    const ownedBy = decision.node;
    const dryRun = q.getAll("dryRun").includes("All");
    const { info } = r;

    if (
      r.subresource &&
      !["status", "scale", "binding", "log", "exec", "attach", "portforward", "finalize"].includes(
        r.subresource,
      )
    ) {
      throw new ApiError(
        404,
        "NotFound",
        `the server could not find the requested resource (${info.plural}/${r.subresource})`,
      );
    }
    if (r.subresource === "status" && !info.status)
      throw new ApiError(404, "NotFound", `${info.plural} have no status subresource`);
    if (r.subresource === "scale" && !info.scale)
      throw new ApiError(404, "NotFound", `${info.plural} have no scale subresource`);
    if (info.kind === "Pod" && r.subresource === "log") {
      const { pod, target, tls } = await this.podTarget(r, q);
      assertLogsAvailable(pod, target.container, q.get("previous") === "true");
      await proxyLogs(tls, target, agentPath("log", pod, target, q), req, res);
      return;
    }
    if (info.kind === "Pod" && r.subresource === "exec") {
      await this.registry.get(info, r.namespace, r.name!);
      throw new ApiError(
        400,
        "BadRequest",
        "pods/exec needs a WebSocket upgrade (subprotocol v5.channel.k8s.io or v4.channel.k8s.io); SPDY is not supported",
      );
    }
    if (info.kind === "Pod" && ["attach", "portforward"].includes(r.subresource ?? "")) {
      await this.registry.get(info, r.namespace, r.name!);
      throw new ApiError(501, "NotImplemented", `pods/${r.subresource} is not supported by lab-server`);
    }
    if (r.subresource && ["log", "exec", "attach", "portforward"].includes(r.subresource)) {
      throw new ApiError(404, "NotFound", `${info.plural} have no ${r.subresource} subresource`);
    }

    const checkOwned = (obj: KObject): void => {
      if (
        ownedBy &&
        info.kind === "Pod" &&
        (obj.spec as { nodeName?: string } | undefined)?.nodeName !== ownedBy
      ) {
        throw new ApiError(
          403,
          "Forbidden",
          `User "${user.name}" cannot ${verb} pod "${r.name}": the pod is not bound to node "${ownedBy}"`,
        );
      }
    };

    switch (verb) {
      case "get": {
        const obj = await this.registry.get(info, r.namespace, r.name!);
        if (r.subresource === "scale") return send(res, 200, toScale(info, obj));
        if (wantsTable(req)) {
          return send(
            res,
            200,
            toTable(info.kind, [obj], {
              resourceVersion: obj.metadata.resourceVersion,
              includeObject: q.get("includeObject") ?? undefined,
            }),
          );
        }
        return send(res, 200, obj);
      }
      case "list": {
        const sel = selectors(q);
        const limit = q.get("limit") ? Number(q.get("limit")) : undefined;
        const out = await this.registry.list(info, r.namespace, sel, limit, q.get("continue") ?? undefined);
        if (wantsTable(req)) {
          return send(
            res,
            200,
            toTable(info.kind, out.items, {
              resourceVersion: out.resourceVersion,
              continue: out.continue,
              includeObject: q.get("includeObject") ?? undefined,
            }),
          );
        }
        const metadata: Record<string, unknown> = { resourceVersion: out.resourceVersion };
        if (out.continue) metadata.continue = out.continue;
        return send(res, 200, {
          kind: `${info.kind}List`,
          apiVersion: groupVersion(info),
          metadata,
          items: out.items,
        });
      }
      case "watch":
        return this.serveWatch(req, res, info, r.namespace, q);
      case "create": {
        const body = await this.objectBody(
          req,
          info,
          r.subresource === "binding" ? "Binding" : info.kind,
          r.subresource === "binding",
        );
        if (r.subresource === "binding") {
          if (info.kind !== "Pod") throw new ApiError(404, "NotFound", "binding is a pods subresource");
          await this.bind(r.namespace!, r.name!, body);
          return send(res, 201, success(201));
        }
        if (r.name || r.subresource)
          throw new ApiError(405, "MethodNotAllowed", "POST goes to the collection, not to a named object");
        if (info.namespaced) {
          const bodyNs = body.metadata.namespace;
          if (bodyNs && bodyNs !== r.namespace) {
            throw badRequest(
              "the namespace of the provided object does not match the namespace sent on the request",
            );
          }
        }
        if (ownedBy && info.kind === "Pod")
          throw new ApiError(403, "Forbidden", `User "${user.name}" cannot create pods`);
        if (ownedBy && body.metadata.name !== ownedBy) {
          throw new ApiError(
            403,
            "Forbidden",
            `User "${user.name}" may only create the ${info.kind} named "${ownedBy}"`,
          );
        }
        const created = await this.registry.create(info, r.namespace, body, dryRun);
        return send(res, 201, created);
      }
      case "update": {
        const body = await this.objectBody(
          req,
          info,
          r.subresource === "scale" ? "Scale" : info.kind,
          r.subresource === "scale",
        );
        if (r.subresource === "finalize")
          return send(res, 200, await this.registry.get(info, undefined, r.name!));
        // An update without a resourceVersion is unconditional: a write that lands between our
        // read and our compare-and-swap is retried on the newer object (Kubernetes'
        // GuaranteedUpdate does the same), not returned to the client as a conflict.
        const unconditional = !body.metadata?.resourceVersion;
        for (let attempt = 0; ; attempt++) {
          const current = await this.registry.get(info, r.namespace, r.name!);
          checkOwned(current);
          try {
            if (r.subresource === "scale")
              return send(res, 200, await this.writeScale(info, current, body, dryRun));
            const mode = r.subresource === "status" ? "status" : "main";
            return send(res, 200, await this.registry.update(info, current, body, mode, dryRun));
          } catch (err) {
            const retry =
              err instanceof ApiError && err.reason === "Conflict" && unconditional && attempt < 5;
            if (!retry) throw err;
          }
        }
      }
      case "patch":
        return send(res, 200, await this.patch(req, info, r, dryRun, checkOwned));
      case "delete": {
        const opts = await this.deleteOptions(req, q);
        opts.dryRun = dryRun;
        if (ownedBy) checkOwned(await this.registry.get(info, r.namespace, r.name!));
        const obj = await this.registry.delete(info, r.namespace, r.name!, opts);
        return send(res, 200, obj);
      }
      case "deletecollection": {
        const opts = await this.deleteOptions(req, q);
        opts.dryRun = dryRun;
        const out = await this.registry.list(info, r.namespace, selectors(q));
        const deleted: KObject[] = [];
        for (const item of out.items) {
          try {
            deleted.push(
              await this.registry.delete(info, item.metadata.namespace, item.metadata.name!, opts),
            );
          } catch (err) {
            if (!(err instanceof ApiError && err.code === 404)) throw err;
          }
        }
        return send(res, 200, {
          kind: `${info.kind}List`,
          apiVersion: groupVersion(info),
          metadata: {},
          items: deleted,
        });
      }
    }
  }

  /** Reads an object body; checks kind/apiVersion when given. */
  private async objectBody(
    req: IncomingMessage,
    info: ResourceInfo,
    kind: string,
    lenient = false,
  ): Promise<KObject> {
    const body = parseBody(await readBody(req), req.headers["content-type"] ?? "");
    if (!isObject(body)) throw badRequest("the request body must be a JSON or YAML object");
    if (body.kind !== undefined && body.kind !== kind && !lenient) {
      throw badRequest(
        `the body's kind "${String(body.kind)}" does not match the resource (expected ${kind})`,
      );
    }
    if (!lenient && body.apiVersion !== undefined && body.apiVersion !== groupVersion(info)) {
      throw badRequest(
        `the body's apiVersion "${String(body.apiVersion)}" does not match the resource (expected ${groupVersion(info)})`,
      );
    }
    if (body.metadata === undefined) body.metadata = {};
    if (!isObject(body.metadata)) throw badRequest("metadata must be an object");
    return body as KObject;
  }

  private async deleteOptions(req: IncomingMessage, q: URLSearchParams): Promise<DeleteOptions> {
    const body = parseBody(await readBody(req), req.headers["content-type"] ?? "");
    const opts: DeleteOptions = {};
    if (isObject(body)) {
      if (typeof body.gracePeriodSeconds === "number") opts.gracePeriodSeconds = body.gracePeriodSeconds;
      if (typeof body.propagationPolicy === "string") opts.propagationPolicy = body.propagationPolicy;
      if (isObject(body.preconditions))
        opts.preconditions = body.preconditions as DeleteOptions["preconditions"];
      if (body.orphanDependents === true) opts.propagationPolicy ??= "Orphan";
    }
    const g = q.get("gracePeriodSeconds");
    if (g !== null) opts.gracePeriodSeconds = Number(g);
    const p = q.get("propagationPolicy");
    if (p) opts.propagationPolicy = p;
    if (opts.propagationPolicy && !["Foreground", "Background", "Orphan"].includes(opts.propagationPolicy)) {
      throw badRequest(
        `unknown propagationPolicy "${opts.propagationPolicy}" (Foreground, Background or Orphan)`,
      );
    }
    return opts;
  }

  private async bind(namespace: string, name: string, binding: KObject): Promise<void> {
    const target = binding.target as { name?: string; kind?: string } | undefined;
    if (!target?.name) throw new ApiError(422, "Invalid", "binding.target.name is required");
    const podInfo = findResource("", "v1", "pods")!;
    for (let attempt = 0; attempt < 5; attempt++) {
      const pod = await this.registry.get(podInfo, namespace, name);
      const spec = (pod.spec ?? {}) as Record<string, unknown>;
      if (spec.nodeName) {
        throw new ApiError(
          409,
          "Conflict",
          `Operation cannot be fulfilled on pods/binding "${name}": pod ${name} is already assigned to node "${String(spec.nodeName)}"`,
        );
      }
      if (pod.metadata.deletionTimestamp)
        throw new ApiError(409, "Conflict", `pod ${name} is being deleted, cannot be assigned to a host`);
      const next = structuredClone(pod);
      (next.spec as Record<string, unknown>).nodeName = target.name;
      const status = (next.status ??= {}) as Record<string, unknown>;
      const conditions = ((status.conditions as Record<string, unknown>[] | undefined) ?? []).filter(
        (c) => c.type !== "PodScheduled",
      );
      conditions.push({
        type: "PodScheduled",
        status: "True",
        lastProbeTime: null,
        lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      });
      status.conditions = conditions;
      try {
        // Binding writes spec.nodeName, which a plain pod update may not change: write directly.
        await this.registry.store.update(
          `/registry/pods/${namespace}/${name}`,
          { ...next, metadata: { ...next.metadata, resourceVersion: undefined } },
          Number(pod.metadata.resourceVersion),
        );
        return;
      } catch (err) {
        if ((err as { reason?: string }).reason !== "Conflict") throw err;
      }
    }
    throw conflict("pods", name);
  }

  private async patch(
    req: IncomingMessage,
    info: ResourceInfo,
    r: Route,
    dryRun: boolean,
    checkOwned: (o: KObject) => void,
  ): Promise<unknown> {
    const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim();
    if (type === "application/apply-patch+yaml") {
      throw new ApiError(
        415,
        "UnsupportedMediaType",
        "server-side apply is not supported by lab-server; use client-side `kubectl apply` (the default)",
      );
    }
    const raw = parseBody(await readBody(req), "application/json");
    const apply = (target: unknown): unknown => {
      switch (type) {
        case "application/merge-patch+json":
          return mergePatch(target, raw);
        case "application/json-patch+json":
          return jsonPatch(target, raw);
        case "application/strategic-merge-patch+json":
          return strategicMerge(target, raw);
        default:
          throw new ApiError(
            415,
            "UnsupportedMediaType",
            `unsupported patch type "${type}" (merge-patch+json, json-patch+json, strategic-merge-patch+json)`,
          );
      }
    };
    const preconditionRv = isObject(raw) && isObject(raw.metadata) ? raw.metadata.resourceVersion : undefined;
    for (let attempt = 0; ; attempt++) {
      const current = await this.registry.get(info, r.namespace, r.name!);
      checkOwned(current);
      try {
        if (r.subresource === "scale") {
          const patched = apply(toScale(info, current));
          if (!isObject(patched)) throw badRequest("the patched scale is not an object");
          return await this.writeScale(info, current, patched as KObject, dryRun);
        }
        const patched = apply(current);
        if (!isObject(patched)) throw badRequest("the patched object is not an object");
        const next = patched as KObject;
        if (!isObject(next.metadata)) throw badRequest("the patch removed metadata");
        if (preconditionRv === undefined) next.metadata.resourceVersion = current.metadata.resourceVersion;
        return await this.registry.update(
          info,
          current,
          next,
          r.subresource === "status" ? "status" : "main",
          dryRun,
        );
      } catch (err) {
        // Patches without a resourceVersion precondition re-apply to the newer object, as Kubernetes does.
        if (
          err instanceof ApiError &&
          err.reason === "Conflict" &&
          preconditionRv === undefined &&
          attempt < 5
        )
          continue;
        throw err;
      }
    }
  }

  private async writeScale(
    info: ResourceInfo,
    current: KObject,
    scale: KObject,
    dryRun: boolean,
  ): Promise<unknown> {
    const replicas = (scale.spec as { replicas?: unknown } | undefined)?.replicas;
    if (typeof replicas !== "number" || !Number.isInteger(replicas) || replicas < 0) {
      throw new ApiError(
        422,
        "Invalid",
        `Scale.autoscaling "${current.metadata.name}" is invalid: spec.replicas: Invalid value: ${JSON.stringify(replicas)}: must be greater than or equal to 0`,
        {
          causes: [
            {
              field: "spec.replicas",
              reason: "FieldValueInvalid",
              message: "must be greater than or equal to 0",
            },
          ],
        },
      );
    }
    const rv = scale.metadata?.resourceVersion;
    if (rv && rv !== current.metadata.resourceVersion)
      throw conflict(info.plural, current.metadata.name!, info.group);
    const next = structuredClone(current);
    (next.spec as Record<string, unknown>).replicas = replicas;
    const updated = await this.registry.update(info, current, next, "main", dryRun);
    return toScale(info, updated);
  }

  private async serveWatch(
    req: IncomingMessage,
    res: ServerResponse,
    info: ResourceInfo,
    namespace: string | undefined,
    q: URLSearchParams,
  ): Promise<void> {
    const sel = selectors(q);
    const table = wantsTable(req);
    const timeoutSeconds = q.get("timeoutSeconds") ? Number(q.get("timeoutSeconds")) : 1800;
    const bookmarks = q.get("allowWatchBookmarks") === "true";
    let headerSent = false;
    let first = true;
    let ended = false;
    const write = (ev: WatchEvent): void => {
      if (ended) return;
      if (!headerSent) {
        res.writeHead(200, { "Content-Type": "application/json", "Transfer-Encoding": "chunked" });
        headerSent = true;
      }
      let object: unknown = ev.object;
      if (table && (ev.type === "ADDED" || ev.type === "MODIFIED" || ev.type === "DELETED")) {
        const t = toTable(info.kind, [ev.object as KObject], {
          includeObject: q.get("includeObject") ?? undefined,
        });
        if (!first) t.columnDefinitions = [];
        first = false;
        object = t;
      }
      res.write(JSON.stringify({ type: ev.type, object }) + "\n");
    };
    // Filled in once the store watch runs; `end` may fire before that (client gone, 410).
    const running: { stop?: () => Promise<void>; timer?: NodeJS.Timeout; bookmarks?: NodeJS.Timeout } = {};
    const end = (err?: ApiError): void => {
      if (ended) return;
      if (err) write({ type: "ERROR", object: err.toStatus() as Record<string, unknown> });
      ended = true;
      this.watches.delete(end);
      clearTimeout(running.timer);
      clearInterval(running.bookmarks);
      void running.stop?.();
      if (!headerSent) res.writeHead(200, { "Content-Type": "application/json" });
      res.end();
    };
    this.watches.add(end);
    req.on("close", () => end());
    let handle;
    try {
      handle = await this.registry.watch(
        info,
        namespace,
        sel,
        q.get("resourceVersion") ?? undefined,
        write,
        end,
      );
    } catch (err) {
      if (err instanceof ApiError && err.code === 410) {
        end(err);
        return;
      }
      this.watches.delete(end);
      throw err;
    }
    running.stop = handle.stop;
    if (ended) {
      void handle.stop();
      return;
    }
    if (!headerSent) {
      res.writeHead(200, { "Content-Type": "application/json", "Transfer-Encoding": "chunked" });
      headerSent = true;
      // Flush the headers so clients see the watch established before the first event.
      res.flushHeaders();
    }
    running.timer = setTimeout(() => end(), timeoutSeconds * 1000);
    if (bookmarks) {
      const h = handle;
      running.bookmarks = setInterval(() => {
        write({
          type: "BOOKMARK",
          object: {
            kind: info.kind,
            apiVersion: groupVersion(info),
            metadata: { resourceVersion: String(h.lastRevision()) },
          },
        });
      }, this.opts.bookmarkIntervalMs ?? 60_000);
    }
  }
}

function selectors(q: URLSearchParams): Selectors {
  try {
    return {
      labels: parseLabelSelector(q.get("labelSelector") ?? ""),
      fields: parseFieldSelector(q.get("fieldSelector") ?? ""),
    };
  } catch (err) {
    throw badRequest((err as Error).message);
  }
}

/** The autoscaling/v1 Scale view of a Deployment or ReplicaSet. */
function toScale(info: ResourceInfo, obj: KObject): Record<string, unknown> {
  const spec = (obj.spec ?? {}) as { replicas?: number; selector?: SelectorObject };
  const status = (obj.status ?? {}) as { replicas?: number };
  const m = obj.metadata;
  return {
    kind: "Scale",
    apiVersion: "autoscaling/v1",
    metadata: {
      name: m.name,
      namespace: m.namespace,
      uid: m.uid,
      resourceVersion: m.resourceVersion,
      creationTimestamp: m.creationTimestamp,
    },
    spec: { replicas: spec.replicas ?? 0 },
    status: { replicas: status.replicas ?? 0, selector: selectorObjectToString(spec.selector) },
  };
}

export { notFound };
