/**
 * The control loops' client inside lab-server (the scheduler and the controller manager that
 * lab-server runs itself): their calls go to this process's Registry, authorized as the loops'
 * own identity and through the same checks, admission, validation and update loop as a request
 * over HTTPS (handlers/create.ts createObject, handlers/update.ts updateObject), without a TLS
 * connection to itself and a JSON encode and decode on each side. Loops in another process keep
 * the REST client (lab-client-loops.ts).
 *
 * What a caller gets is its own: bodies are copied through JSON on the way in (as a request body
 * would be: undefined members dropped, Dates as strings), watch events are copied out of the
 * shared watch cache from the one JSON each event gets (registry/object-json.ts).
 */
import { X509Certificate } from "node:crypto";
import type { V1Lease } from "@kubernetes/client-node";
import type { KubeObject, ListWatcher, WatchEvent as InformerEvent } from "../api/informer.ts";
import type { LeaseStore } from "../api/leader-election.ts";
import { groupVersion, RESOURCES, type ResourceInfo } from "../api/resources.ts";
import { parseFieldSelector } from "../api/selectors.ts";
import { ApiError, badRequest } from "../api/status.ts";
import { admitNode, authorize, forbidden, rbacReason, type NodeGraph, type UserInfo } from "./authz.ts";
import type { KObject, Registry, WatchEvent } from "./registry.ts";
import type { FieldsWrite } from "./registry/apply/index.ts";
import { copyOf } from "./registry/object-json.ts";
import { checkedObject } from "./server/body.ts";
import { createObject } from "./server/handlers/create.ts";
import { updateObject } from "./server/handlers/update.ts";
import { toApiError } from "./server/reply.ts";
import type { ListWatchFactory, ObjectWriter, Resource } from "./loop-client.ts";
import { isNotFound } from "./loop-client.ts";

/** What of the API server the in-process client needs (ApiServer.local). */
export interface LocalApi {
  registry: Registry;
  graph: NodeGraph;
  /** Interval of BOOKMARK events on a watch, as the server sends them to clients that allow them. */
  bookmarkIntervalMs: number;
}

export interface LoopClient {
  lw: ListWatchFactory;
  writer: ObjectWriter;
  leases: LeaseStore;
}

/** The user a client certificate authenticates as (CN the name, O the groups), as CertAuthenticator. */
export function certificateUser(certPem: string | Buffer): UserInfo {
  const subject = new X509Certificate(certPem).subject.split("\n");
  const name = subject.find((l) => l.startsWith("CN="))?.slice(3);
  if (!name) throw new Error("the loops' client certificate has no CN (user name)");
  const groups = subject.filter((l) => l.startsWith("O=")).map((l) => l.slice(2));
  return { name, groups: [...groups, "system:authenticated"] };
}

function infoOf(resource: string): ResourceInfo {
  const info = RESOURCES.find((r) => r.plural === resource);
  if (!info)
    throw new ApiError(404, "NotFound", `the server could not find the requested resource (${resource})`);
  return info;
}

/**
 * Calls in flight at once, as the REST client's pool of 64 connections bounds them (client.ts):
 * a ReplicaSet's burst of 500 creates must queue here, not become 500 etcd transactions at once
 * (past etcd's deadline, etcd3's circuit breaker fails every call for 5 s).
 */
const MAX_IN_FLIGHT = 64;

class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly max: number) {}

  async run<T>(f: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((r) => this.waiting.push(r));
    else this.active++;
    try {
      return await f();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

/** A request body as the server would read it: its own JSON copy, checked as objectBody checks one. */
function requestBody(obj: unknown, info: ResourceInfo): KObject {
  return checkedObject(JSON.parse(JSON.stringify(obj) ?? "null"), info, info.kind);
}

export function localLoopClient(api: LocalApi, user: UserInfo): LoopClient {
  const { registry, graph } = api;
  const limiter = new Limiter(MAX_IN_FLIGHT);
  // managedFields name the loops as upstream's do (kube-scheduler, kube-controller-manager)
  const manager = user.name.replace(/^system:/, "");
  const fields = (subresource?: string): FieldsWrite => ({
    operation: "Update",
    manager,
    ...(subresource ? { subresource } : {}),
  });

  /** Errors as a client over HTTPS would see them: a Status code and reason (reply.ts toApiError). */
  const asClient = <T>(f: () => Promise<T>): Promise<T> =>
    limiter.run(async () => {
      try {
        return await f();
      } catch (err) {
        throw toApiError(err);
      }
    });

  /** Authorizes as the server does; answers NodeRestriction's admission for this request. */
  async function allow(
    verb: string,
    info: ResourceInfo,
    namespace: string | undefined,
    name?: string,
    subresource?: string,
  ): Promise<{ admit: (obj: KObject) => Promise<void>; node: string | undefined }> {
    const attrs = { verb, info, namespace, name, subresource };
    const decision = await authorize(user, attrs, graph);
    if (!decision.allowed) throw forbidden(attrs, decision.reason);
    const node = decision.node;
    return {
      node,
      admit: async (obj) => {
        if (node === undefined) return;
        const why = await admitNode(node, attrs, obj, graph);
        if (why) throw forbidden(attrs, `${rbacReason(user, attrs)}: ${why}`);
      },
    };
  }

  const nsOf = (info: ResourceInfo, namespace: string | undefined): string | undefined =>
    info.namespaced ? namespace : undefined;

  async function put<T extends KubeObject>(resource: Resource, obj: T, subresource?: string): Promise<T> {
    const info = infoOf(resource);
    const ns = nsOf(info, obj.metadata?.namespace);
    const name = obj.metadata?.name;
    if (!name) throw badRequest("an update needs metadata.name");
    const { admit } = await allow("update", info, ns, name, subresource);
    const body = requestBody(obj, info);
    return (await updateObject(
      registry,
      info,
      ns,
      name,
      body,
      subresource,
      admit,
      false,
      fields(subresource),
    )) as T;
  }

  const writer: ObjectWriter = {
    get: <T extends KubeObject>(resource: Resource, namespace: string | undefined, name: string) =>
      asClient(async () => {
        const info = infoOf(resource);
        const ns = nsOf(info, namespace);
        await allow("get", info, ns, name);
        try {
          return (await registry.get(info, ns, name)) as unknown as T;
        } catch (err) {
          if (isNotFound(err)) return undefined;
          throw err;
        }
      }),
    create: <T extends KubeObject>(resource: Resource, namespace: string | undefined, obj: T) =>
      asClient(async () => {
        const info = infoOf(resource);
        const ns = nsOf(info, namespace ?? obj.metadata?.namespace);
        const { admit } = await allow("create", info, ns);
        const created = await createObject(
          registry,
          info,
          ns,
          requestBody(obj, info),
          admit,
          false,
          fields(),
        );
        return created as unknown as T;
      }),
    update: (resource, _namespace, obj) => asClient(() => put(resource, obj)),
    updateStatus: (resource, _namespace, obj) => asClient(() => put(resource, obj, "status")),
    delete: (resource, namespace, name, opts = {}) =>
      asClient(async () => {
        const info = infoOf(resource);
        const ns = nsOf(info, namespace);
        const { admit, node } = await allow("delete", info, ns, name);
        if (node !== undefined) await admit(await registry.get(info, ns, name));
        await registry.delete(info, ns, name, {
          dryRun: false,
          ...(opts.propagationPolicy ? { propagationPolicy: opts.propagationPolicy } : {}),
          ...(opts.uid ? { preconditions: { uid: opts.uid } } : {}),
        });
      }),
    bind: (namespace, pod, node) =>
      asClient(async () => {
        await allow("create", infoOf("pods"), namespace, pod, "binding");
        if (!node) throw new ApiError(422, "Invalid", "binding.target.name is required");
        await registry.bind(namespace, pod, node);
      }),
  };

  const lw = <T extends KubeObject>(
    resource: Resource,
    namespace?: string,
    opts: { fieldSelector?: string } = {},
  ): ListWatcher<T> => {
    const info = infoOf(resource);
    const ns = nsOf(info, namespace);
    const sel = { labels: [], fields: parseFieldSelector(opts.fieldSelector ?? "") };
    return {
      list: () =>
        asClient(async () => {
          await allow("list", info, ns);
          // Fresh objects from etcd's answer, no one else's: no copy needed.
          const out = await registry.list(info, ns, sel);
          return { items: out.items as unknown as T[], resourceVersion: out.resourceVersion };
        }),
      watch: (resourceVersion, signal) =>
        watchStream<T>(api, info, ns, sel, resourceVersion, signal, () =>
          asClient(() => allow("watch", info, ns)),
        ),
    };
  };

  const leases: LeaseStore = {
    get: (namespace, name) => writer.get<V1Lease>("leases", namespace, name),
    create: (lease) => writer.create("leases", lease.metadata?.namespace, lease),
    update: (lease) => writer.update("leases", lease.metadata?.namespace, lease),
  };

  return { lw: lw as ListWatchFactory, writer, leases };
}

/** Watch events handed to a consumer before it gives the event loop's I/O a turn. */
const YIELD_EVERY = 32;

/**
 * A watch as an async iterable, the events of the HTTP watch handler (handlers/watch.ts) without
 * the stream: BOOKMARKs on the server's interval, 410 as an ERROR event, the end when the watch
 * cache ends it or `signal` aborts.
 */
async function* watchStream<T extends KubeObject>(
  api: LocalApi,
  info: ResourceInfo,
  namespace: string | undefined,
  sel: Parameters<Registry["watch"]>[2],
  resourceVersion: string,
  signal: AbortSignal | undefined,
  authorized: () => Promise<unknown>,
): AsyncGenerator<InformerEvent<T>> {
  const queue: WatchEvent[] = [];
  let head = 0;
  let ended: ApiError | null | undefined; // undefined: running; null: ended without error
  let wake: (() => void) | undefined;
  const poke = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const send = (ev: WatchEvent): void => {
    queue.push(ev);
    poke();
  };
  signal?.addEventListener("abort", poke, { once: true });
  let handle: Awaited<ReturnType<Registry["watch"]>> | undefined;
  let bookmarks: NodeJS.Timeout | undefined;
  try {
    await authorized();
    try {
      handle = await api.registry.watch(info, namespace, sel, resourceVersion || undefined, send, (err) => {
        ended = err ?? null;
        poke();
      });
    } catch (err) {
      const status = toApiError(err);
      if (status.code !== 410) throw status;
      yield { type: "ERROR", object: status.toStatus() as unknown as T };
      return;
    }
    const h = handle;
    bookmarks = setInterval(
      () =>
        send({
          type: "BOOKMARK",
          object: {
            kind: info.kind,
            apiVersion: groupVersion(info),
            metadata: { resourceVersion: String(h.lastRevision()) },
          },
        }),
      api.bookmarkIntervalMs,
    );
    let n = 0;
    for (;;) {
      while (head < queue.length) {
        // A backlog is consumed in microtasks: let I/O in now and then, as a socket's reads would,
        // so a burst of events does not hold every HTTPS request waiting.
        if (++n % YIELD_EVERY === 0) await new Promise((r) => setImmediate(r));
        if (signal?.aborted) return;
        const ev = queue[head++]!;
        if (head > 1024 && head * 2 > queue.length) {
          queue.splice(0, head);
          head = 0;
        }
        const object = ev.type === "BOOKMARK" ? ev.object : copyOf(ev.object as KObject);
        yield { type: ev.type, object: object as unknown as T };
      }
      if (signal?.aborted) return;
      if (ended !== undefined) {
        if (ended) yield { type: "ERROR", object: ended.toStatus() as unknown as T };
        return;
      }
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    signal?.removeEventListener("abort", poke);
    clearInterval(bookmarks);
    await handle?.stop().catch(() => undefined);
  }
}
