import { createServer as createHttpsServer, type Server } from "node:https";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from "node:http";
import type { Duplex } from "node:stream";
import { findResource } from "../../api/resources.ts";
import { ApiError } from "../../api/status.ts";
import {
  admitNode,
  authorize,
  forbidden,
  rbacReason,
  type Attributes,
  type NodeGraph,
  type UserInfo,
} from "../authz.ts";
import { discovery, SERVER_VERSION } from "../discovery.ts";
import { EtcdReadiness } from "../etcd-readiness.ts";
import type { LocalApi } from "../local-client.ts";
import { serveOpenApiV2, serveOpenApiV3 } from "../openapi.ts";
import { rejectUpgrade, type KubeletClientTls } from "../node-proxy.ts";
import { Registry, type KObject } from "../registry.ts";
import { RbacAuthorizer } from "../rbac/authorizer.ts";
import { ensureBootstrapPolicy } from "../rbac/bootstrap-policy.ts";
import { admitRbacWrite } from "../rbac/admission.ts";
import { ServiceIpAllocator } from "../service-ips.ts";
import type { EtcdStore } from "../storage/etcd-store.ts";
import { startCompactor } from "../storage/compactor.ts";
import { ANONYMOUS, BearerAuthenticator, CertAuthenticator, unauthorized } from "./auth.ts";
import { impersonate } from "./impersonation.ts";
import { parseReviewPath, serveReview } from "./reviews.ts";
import { ServiceAccountTokens } from "../serviceaccount/tokens.ts";
import type { RequestContext } from "./context.ts";
import { HANDLERS } from "./handlers/index.ts";
import { HealthThread } from "./health-thread.ts";
import { convertingRegistry } from "./conversion.ts";
import { MetricsSource } from "../metrics/source.ts";
import { parseMetricsPath, serveMetrics } from "../metrics/serve.ts";
import { Reply, toApiError } from "./reply.ts";
import { cleanPath, parseResourcePath, requestUrl, verbOf, type Route } from "./request-info.ts";
import { checkSubresource, servePodStream, serveUpgrade } from "./subresources/index.ts";
import { listen } from "../../lib/listen.ts";

const HEALTH_PATHS = new Set(["/healthz", "/livez", "/readyz"]);
const PUBLIC_PATHS = new Set([...HEALTH_PATHS, "/version"]);
const ignore = (): void => undefined;

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
  /**
   * Service-account tokens: the PEM key that signs them (--service-account-signing-key-file), the
   * PEM keys that verify them (--service-account-key-file, default: the signing key's), the issuer.
   * Without it, both are the serving key (tls.key), as kube-apiserver's key-file default.
   */
  serviceAccount?: { signingKey: Buffer; verifyKeys?: Buffer; issuer?: string };
}

/** The Kubernetes-compatible REST API over etcd (HTTPS with client-certificate authentication). */
export class ApiServer {
  readonly registry: Registry;
  private server: Server | undefined;
  private readonly healthThreads: HealthThread[] = [];
  private healthServer: HttpServer | undefined;
  private readonly watches = new Set<() => void>();
  /** Every TCP connection of the API port, also those mid-handshake or upgraded (exec, logs -f). */
  private readonly sockets = new Set<Duplex>();
  private stopCompaction: () => void = () => undefined;
  private readonly readiness: EtcdReadiness;
  private defaultsPending: string | undefined = "default objects not created yet";
  private defaultsRetry: NodeJS.Timeout | undefined;
  private stopping = false;
  private readonly authenticator = new CertAuthenticator();
  /** Signs and checks service-account tokens (TokenRequest, bearer authentication). */
  readonly tokens: ServiceAccountTokens;
  private readonly bearer: BearerAuthenticator;
  /** The Node authorizer's view of the cluster: read from the registry on each check, no cache. */
  private readonly graph: NodeGraph;
  private readonly rbac: RbacAuthorizer;
  /** metrics.k8s.io: summaries asked of the node agents (metrics/source.ts). */
  private readonly metrics: MetricsSource;

  constructor(private readonly opts: ApiServerOptions) {
    this.registry = new Registry(opts.store, new ServiceIpAllocator(opts.store, opts.serviceClusterIpRange));
    this.metrics = new MetricsSource(this.registry, { kubeletClient: opts.kubeletClient });
    this.readiness = new EtcdReadiness(opts.store);
    const pods = findResource("", "v1", "pods")!;
    this.rbac = new RbacAuthorizer(this.registry);
    this.graph = {
      podsOnNode: async (node, namespace) =>
        (
          await this.registry.list(pods, namespace, {
            labels: [],
            fields: [{ field: "spec.nodeName", op: "=", value: node }],
          })
        ).items,
      rbac: this.rbac,
    };
    const sa = opts.serviceAccount;
    this.tokens = ServiceAccountTokens.fromPem(
      (sa?.signingKey ?? opts.tls.key).toString(),
      sa?.verifyKeys?.toString(),
      sa?.issuer,
    );
    const serviceAccounts = findResource("", "v1", "serviceaccounts")!;
    const uidOf = async (info: typeof pods, namespace: string, name: string): Promise<KObject | undefined> =>
      this.registry.get(info, namespace, name).catch((err: unknown) => {
        if (err instanceof ApiError && err.code === 404) return undefined;
        throw err;
      });
    this.bearer = new BearerAuthenticator(this.tokens, {
      serviceAccountUid: async (ns, name) =>
        (await uidOf(serviceAccounts, ns, name))?.metadata.uid ?? undefined,
      podUid: async (ns, name) => {
        const pod = await uidOf(pods, ns, name);
        return pod && !pod.metadata.deletionTimestamp ? (pod.metadata.uid ?? undefined) : undefined;
      },
    });
  }

  /**
   * Who is calling: the client certificate, else a bearer token (401 when it is not valid), else
   * nobody; then impersonation, when the caller asks for it and may.
   */
  private async identify(req: IncomingMessage): Promise<UserInfo | undefined> {
    let user = this.authenticator.authenticate(req);
    if (!user) {
      const token = BearerAuthenticator.tokenOf(req);
      if (token !== undefined) user = await this.bearer.authenticate(token);
    }
    if (!user) return undefined;
    return impersonate(req, user, this.graph);
  }

  /** This server's registry and authorizer for control loops in its own process (local-client.ts). */
  get local(): LocalApi {
    return {
      registry: this.registry,
      graph: this.graph,
      bookmarkIntervalMs: this.opts.bookmarkIntervalMs ?? 60_000,
    };
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
      socket.on("error", ignore);
      this.identify(req)
        .then((user) =>
          serveUpgrade(user, this.registry, this.graph, this.opts.kubeletClient, req, socket, head),
        )
        .catch((err: unknown) => {
          try {
            rejectUpgrade(socket, toApiError(err));
          } catch {
            socket.destroy();
          }
        });
    });
    // Idle connections stay open 90 s like kube-apiserver's (IdleTimeout), not Node's 5 s: clients
    // with a pool of kept-alive connections (controllers, hollow nodes, kubelets) would otherwise
    // pay a new TLS handshake after every pause of a few seconds.
    server.keepAliveTimeout = 90_000;
    // A client gone mid-handshake, mid-body or mid-watch is that connection's end, never the process's.
    server.on("tlsClientError", (_err: Error, socket: Duplex) => socket.destroy());
    server.on("connection", (socket: Duplex) => {
      socket.on("error", ignore);
      this.sockets.add(socket);
      socket.once("close", () => this.sockets.delete(socket));
    });
    server.on("secureConnection", (socket: Duplex) => socket.on("error", ignore));
    this.server = server;
    const bound = await listen(server, host, port);
    server.on("error", ignore);
    this.startCompaction();
    // Already serving; start() returns after the first etcd probe and the first attempt at the
    // defaults (each bounded by the etcd client's deadline), so a healthy etcd gives a ready server.
    let firstAttempt!: () => void;
    const attempted = new Promise<void>((resolve) => (firstAttempt = resolve));
    void this.ensureDefaultsUntilDone(firstAttempt);
    await Promise.all([this.readiness.start(), attempted]);
    return bound;
  }

  /**
   * Plain HTTP on a local address, health paths only: for checks that run every few seconds (keepalived),
   * where a TLS handshake per check costs a slow master more than the check is worth. Served from a
   * thread of its own (health-thread.ts), so a busy API loop does not make the check time out.
   */
  async startHealth(host: string, port: number): Promise<number> {
    const thread = new HealthThread();
    this.healthThreads.push(thread);
    try {
      return await thread.start({ host, port }, () => this.notReady());
    } catch (err) {
      // A thread that cannot start (a starved guest, a resource limit) must not cost the health
      // port: serve it from the API's own loop, as before the thread existed.
      console.error(`health thread: ${(err as Error).message}; serving ${host}:${port} from the main loop`);
      return this.startHealthInLoop(host, port);
    }
  }

  private async startHealthInLoop(host: string, port: number): Promise<number> {
    const server = createHttpServer((req, res) => {
      const reply = new Reply(res);
      req.on("error", ignore);
      try {
        const path = cleanPath(requestUrl(req.url).pathname);
        if (req.method !== "GET" || !HEALTH_PATHS.has(path)) {
          return reply.text(404, "only /healthz, /livez and /readyz are served here");
        }
        this.health(path, reply);
      } catch (err) {
        reply.fail(err);
      }
    });
    server.on("connection", (socket: Duplex) => socket.on("error", ignore));
    this.healthServer = server;
    const bound = await listen(server, host, port);
    server.on("error", ignore);
    return bound;
  }

  /** Why /readyz fails, or undefined: from the probe loop's verdict, never an etcd round trip. */
  private notReady(): string | undefined {
    return this.defaultsPending ?? this.readiness.notReady();
  }

  private health(path: string, reply: Reply): void {
    if (path === "/readyz") {
      // From the probe loop's verdict: a check must not wait for (or add) an etcd round trip.
      const why = this.notReady();
      if (why) throw new ApiError(503, "ServiceUnavailable", why);
    }
    reply.text(200, "ok");
  }

  /** Compacts etcd to the revision seen one interval earlier, one apiserver per round (compactor.ts). */
  private startCompaction(): void {
    this.stopCompaction = startCompactor(this.opts.store, this.opts.compactionIntervalMs ?? 5 * 60_000);
  }

  /** Retries ensureDefaults (1 s, doubling to 10 s) until it succeeds or the server stops. */
  private async ensureDefaultsUntilDone(attempted: () => void): Promise<void> {
    for (let delay = 1000; !this.stopping; delay = Math.min(delay * 2, 10_000)) {
      try {
        await this.registry.ensureDefaults(this.opts.advertiseAddress, this.opts.securePort);
        await ensureBootstrapPolicy(this.registry);
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

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.defaultsRetry);
    this.stopCompaction();
    this.readiness.stop();
    await Promise.all(this.healthThreads.splice(0).map((t) => t.stop()));
    const health = this.healthServer;
    if (health) {
      health.closeAllConnections();
      await new Promise<void>((resolve) => health.close(() => resolve()));
    }
    for (const end of [...this.watches]) end();
    await this.registry.close();
    const server = this.server;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // Every TCP connection, not closeAllConnections(): that one knows only connections past the TLS
    // handshake and not upgraded, and server.close() would wait for the others (an exec stream).
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  /** The error boundary: every request runs inside it, and nothing escapes it. */
  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const reply = new Reply(res);
    req.on("error", ignore);
    try {
      const url = requestUrl(req.url);
      const path = cleanPath(url.pathname);
      const user = await this.identify(req);
      // Health and version are public, as with Kubernetes' system:public-info-viewer, so load
      // balancers and keepalived can check an apiserver without a client certificate.
      if (!user && !PUBLIC_PATHS.has(path)) throw unauthorized();
      await this.route(req, reply, url, path, user ?? ANONYMOUS);
    } catch (err) {
      reply.fail(err);
    }
  }

  private async route(
    req: IncomingMessage,
    reply: Reply,
    url: URL,
    path: string,
    user: UserInfo,
  ): Promise<void> {
    const method = req.method ?? "GET";
    if (HEALTH_PATHS.has(path)) return this.health(path, reply);
    if (path === "/version") return reply.json(200, SERVER_VERSION);
    if (path === "/openapi/v2") return serveOpenApiV2(req, reply.res);
    if (path === "/openapi/v3" || path.startsWith("/openapi/v3/")) {
      if (!serveOpenApiV3(req, reply.res, path))
        throw new ApiError(404, "NotFound", `no OpenAPI document for ${path}`);
      return;
    }
    const disc = discovery(path, `${this.opts.advertiseAddress}:${this.opts.securePort}`);
    if (disc) {
      if (method !== "GET")
        throw new ApiError(405, "MethodNotAllowed", `${method} is not allowed on ${path}`);
      return reply.json(200, disc);
    }
    const metricsRoute = parseMetricsPath(path);
    if (metricsRoute) {
      const attrs: Attributes = { verb: metricsRoute.name ? "get" : "list", ...metricsRoute };
      const decision = await authorize(user, attrs, this.graph);
      if (!decision.allowed) throw forbidden(attrs, decision.reason);
      return reply.json(
        200,
        await serveMetrics(metricsRoute, method, url.searchParams, req, this.registry, this.metrics),
      );
    }
    const review = parseReviewPath(path);
    if (review)
      return serveReview(req, reply, method, review, user, this.graph, (t) => this.bearer.authenticate(t));
    const route = parseResourcePath(path);
    if (!route)
      throw new ApiError(
        404,
        "NotFound",
        `the server could not find the requested resource (${method} ${path})`,
      );
    await this.serveResource(req, reply, url, user, route, method);
  }

  private async serveResource(
    req: IncomingMessage,
    reply: Reply,
    url: URL,
    user: UserInfo,
    route: Route,
    method: string,
  ): Promise<void> {
    const q = url.searchParams;
    const verb = verbOf(method, route, q);
    if (route.subresource === "token" && verb !== "create")
      throw new ApiError(
        405,
        "MethodNotAllowed",
        `the server does not allow this method on the requested resource (${method} serviceaccounts/token)`,
      );
    const attrs: Attributes = {
      verb,
      info: route.info,
      subresource: route.subresource,
      namespace: route.namespace,
      name: route.name,
    };
    const decision = await authorize(user, attrs, this.graph);
    if (!decision.allowed) throw forbidden(attrs, decision.reason);
    const node = decision.node;
    const ctx: RequestContext = {
      req,
      reply,
      url,
      q,
      user,
      route,
      verb,
      attrs,
      dryRun: q.getAll("dryRun").includes("All"),
      registry: convertingRegistry(this.registry, route.info),
      node,
      admit: async (obj: KObject) => {
        if (node === undefined) return;
        const why = await admitNode(node, attrs, obj, this.graph);
        if (why) throw forbidden(attrs, `${rbacReason(user, attrs)}: ${why}`);
      },
      admitNew: (obj: KObject) =>
        admitRbacWrite(user, route.info, route.namespace, obj, this.graph, this.rbac),
      server: {
        kubeletClient: this.opts.kubeletClient,
        bookmarkIntervalMs: this.opts.bookmarkIntervalMs ?? 60_000,
        watches: this.watches,
        tokens: this.tokens,
      },
    };
    checkSubresource(route);
    if (await servePodStream(ctx)) return;
    await HANDLERS[verb](ctx);
  }
}
