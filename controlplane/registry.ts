import { randomBytes, randomUUID } from "node:crypto";
import { applyDefaults } from "../api/defaults.ts";
import { groupVersion, hasSpec, RESOURCES, type ResourceInfo } from "../api/resources.ts";
import {
  matchesFields,
  matchesLabels,
  type FieldRequirement,
  type LabelRequirement,
} from "../api/selectors.ts";
import { alreadyExists, ApiError, badRequest, conflict, gone, invalid, notFound } from "../api/status.ts";
import { validateObject } from "../api/validation.ts";
import { NodePortAllocator, type ServiceIpAllocator } from "./service-ips.ts";
import { StoreError, type EtcdStore, type StoreEvent } from "./storage/etcd-store.ts";
import { WatchCache } from "./storage/watch-cache.ts";

/** A served object as stored: plain JSON with Kubernetes metadata. */
export type KObject = Record<string, unknown> & { metadata: Meta };
export interface Meta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: unknown[];
  managedFields?: unknown;
  [k: string]: unknown;
}

export interface WatchEvent {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: Record<string, unknown>;
}

export interface Selectors {
  labels: LabelRequirement[];
  fields: FieldRequirement[];
}

export interface DeleteOptions {
  gracePeriodSeconds?: number;
  propagationPolicy?: string;
  preconditions?: { uid?: string; resourceVersion?: string };
  dryRun?: boolean;
}

export const SYSTEM_NAMESPACES = ["default", "kube-system", "kube-public", "kube-node-lease"];

function stable(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stable).join(",")}]`;
  if (v && typeof v === "object") {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stable((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
}

const NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789";
function randomSuffix(): string {
  return [...randomBytes(5)].map((b) => NAME_CHARS[b % NAME_CHARS.length]).join("");
}

export function storageKey(info: ResourceInfo, namespace: string | undefined, name?: string): string {
  const base = `/registry/${info.plural}/`;
  if (!info.namespaced) return name === undefined ? base : base + name;
  if (namespace === undefined) return base;
  return name === undefined ? `${base}${namespace}/` : `${base}${namespace}/${name}`;
}

function withVersion(obj: KObject, modRevision: number): KObject {
  obj.metadata.resourceVersion = String(modRevision);
  return obj;
}

function mapStoreError(err: unknown, info: ResourceInfo, name: string): never {
  if (err instanceof StoreError) {
    if (err.reason === "Conflict") throw conflict(info.plural, name, info.group);
    if (err.reason === "NotFound") throw notFound(info.plural, name, info.group);
    if (err.reason === "AlreadyExists") throw alreadyExists(info.plural, name, info.group);
    if (err.reason === "Compacted") throw gone(err.message);
  }
  throw err;
}

interface ContinueToken {
  rv: number;
  start: string;
}

/**
 * The object semantics of the API (create, update, delete, list, watch) over the etcd store:
 * defaulting, validation, uid/generation/timestamps, graceful pod deletion, finalizers, cascades.
 */
export class Registry {
  private readonly nodePorts: NodePortAllocator;
  private readonly caches = new Map<string, WatchCache<KObject>>();

  constructor(
    readonly store: EtcdStore,
    private readonly serviceIps: ServiceIpAllocator,
  ) {
    this.nodePorts = new NodePortAllocator(store);
  }

  async get(info: ResourceInfo, namespace: string | undefined, name: string): Promise<KObject> {
    const got = await this.store.get<KObject>(storageKey(info, namespace, name));
    if (!got) throw notFound(info.plural, name, info.group);
    return withVersion(got.value, got.modRevision);
  }

  async list(
    info: ResourceInfo,
    namespace: string | undefined,
    sel: Selectors,
    limit?: number,
    continueToken?: string,
  ): Promise<{ items: KObject[]; resourceVersion: string; continue?: string }> {
    let cont: ContinueToken | undefined;
    if (continueToken) {
      try {
        cont = JSON.parse(Buffer.from(continueToken, "base64url").toString()) as ContinueToken;
      } catch {
        throw badRequest("invalid continue token");
      }
    }
    const prefix = storageKey(info, namespace);
    const page = await this.store
      .list<KObject>(prefix, { limit, continueKey: cont?.start, revision: cont?.rv })
      .catch((err: unknown) => mapStoreError(err, info, ""));
    const items = page.items
      .map((i) => withVersion(i.value, i.modRevision))
      .filter((o) => matchesLabels(sel.labels, o.metadata.labels) && matchesFields(sel.fields, o));
    const out: { items: KObject[]; resourceVersion: string; continue?: string } = {
      items,
      resourceVersion: String(page.revision),
    };
    if (page.continueKey) {
      out.continue = Buffer.from(JSON.stringify({ rv: page.revision, start: page.continueKey })).toString(
        "base64url",
      );
    }
    return out;
  }

  private namespaces: Map<string, KObject> | undefined;
  private namespacesLoading: Promise<void> | undefined;

  /** Keeps every namespace in memory from the watch cache, so creates skip an etcd read. */
  private loadNamespaces(): Promise<void> {
    this.namespacesLoading ??= (async () => {
      const info = RESOURCES.find((r) => r.kind === "Namespace")!;
      const list = await this.list(info, undefined, { labels: [], fields: [] });
      const map = new Map(list.items.map((n) => [n.metadata.name!, n]));
      await this.watchCache(info).subscribe(
        storageKey(info, undefined),
        Number(list.resourceVersion),
        (ev) => {
          const name = ev.key.slice(ev.key.lastIndexOf("/") + 1);
          if (ev.type === "put") map.set(name, ev.value);
          else map.delete(name);
        },
        () => {
          this.namespaces = undefined;
          this.namespacesLoading = undefined;
        },
      );
      this.namespaces = map;
    })().catch((err: unknown) => {
      this.namespacesLoading = undefined;
      throw err;
    });
    return this.namespacesLoading;
  }

  async namespaceMustAccept(namespace: string): Promise<void> {
    await this.loadNamespaces().catch(() => undefined);
    // A namespace another apiserver created a moment ago may not be in the cache yet: ask etcd.
    const ns =
      this.namespaces?.get(namespace) ??
      (await this.store.get<KObject>(`/registry/namespaces/${namespace}`))?.value;
    if (!ns) throw notFound("namespaces", namespace);
    if (ns.metadata.deletionTimestamp) {
      throw new ApiError(
        403,
        "Forbidden",
        `unable to create new content in namespace ${namespace} because it is being terminated`,
      );
    }
  }

  /** Fills identity fields, defaults and validates; throws 422 listing every cause. */
  private prepareNew(info: ResourceInfo, namespace: string | undefined, body: KObject): KObject {
    const obj = structuredClone(body);
    obj.apiVersion = groupVersion(info);
    obj.kind = info.kind;
    const meta = obj.metadata;
    if (!meta.name && meta.generateName) meta.name = meta.generateName + randomSuffix();
    if (info.namespaced) meta.namespace = namespace;
    else delete meta.namespace;
    meta.uid = randomUUID();
    meta.creationTimestamp = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    delete meta.resourceVersion;
    delete meta.deletionTimestamp;
    delete meta.deletionGracePeriodSeconds;
    delete meta.managedFields;
    delete meta.selfLink;
    if (hasSpec(info)) meta.generation = 1;
    else delete meta.generation;
    if (info.kind === "Pod") {
      // A new pod's status is the node agent's to write.
      obj.status = {};
    }
    applyDefaults(info.kind, obj);
    const causes = validateObject(info.kind, obj, info.namespaced);
    if (causes.length) throw invalid(info.kind, meta.name ?? meta.generateName ?? "", causes, info.group);
    return obj;
  }

  async create(
    info: ResourceInfo,
    namespace: string | undefined,
    body: KObject,
    dryRun = false,
  ): Promise<KObject> {
    if (info.namespaced) {
      if (!namespace) throw badRequest("a namespace is required for namespaced resources");
      await this.namespaceMustAccept(namespace);
    }
    const obj = this.prepareNew(info, namespace, body);
    const name = obj.metadata.name!;
    let claimedIp: string | undefined;
    let claimedPorts: number[] = [];
    if (info.kind === "Service" && !dryRun) {
      claimedIp = await this.assignClusterIp(obj);
      try {
        claimedPorts = await this.assignNodePorts(obj, undefined);
      } catch (err) {
        if (claimedIp) await this.serviceIps.release(claimedIp);
        throw err;
      }
    }
    if (dryRun) return obj;
    try {
      const rev = await this.store.create(storageKey(info, namespace, name), obj);
      return withVersion(obj, rev);
    } catch (err) {
      if (claimedIp) await this.serviceIps.release(claimedIp);
      for (const p of claimedPorts) await this.nodePorts.release(p);
      mapStoreError(err, info, name);
    }
  }

  private async assignClusterIp(svc: KObject): Promise<string | undefined> {
    const spec = (svc.spec ?? {}) as Record<string, unknown>;
    if (spec.type === "ExternalName" || spec.clusterIP === "None") return undefined;
    const owner = `${svc.metadata.namespace}/${svc.metadata.name}`;
    const want = typeof spec.clusterIP === "string" && spec.clusterIP !== "" ? spec.clusterIP : undefined;
    if (want) {
      if (!this.serviceIps.contains(want)) {
        throw invalid("Service", svc.metadata.name!, [
          {
            field: "spec.clusterIP",
            reason: "FieldValueInvalid",
            message: `Invalid value: "${want}": provided IP is not in the valid range`,
          },
        ]);
      }
      if (!(await this.serviceIps.claim(want, owner))) {
        throw invalid("Service", svc.metadata.name!, [
          {
            field: "spec.clusterIP",
            reason: "FieldValueInvalid",
            message: `Invalid value: "${want}": provided IP is already allocated`,
          },
        ]);
      }
      spec.clusterIPs = [want];
      return want;
    }
    const ip = await this.serviceIps.allocate(owner);
    spec.clusterIP = ip;
    spec.clusterIPs = [ip];
    spec.ipFamilies = ["IPv4"];
    spec.ipFamilyPolicy = "SingleStack";
    return ip;
  }

  /** Gives NodePort/LoadBalancer ports a node port (kept from `current` when already set there). */
  private async assignNodePorts(svc: KObject, current: KObject | undefined): Promise<number[]> {
    const spec = (svc.spec ?? {}) as {
      type?: string;
      ports?: { port?: number; protocol?: string; nodePort?: number }[];
    };
    if (spec.type !== "NodePort" && spec.type !== "LoadBalancer") return [];
    const owner = `${svc.metadata.namespace}/${svc.metadata.name}`;
    const had = new Map<string, number>();
    for (const p of ((current?.spec ?? {}) as typeof spec).ports ?? [])
      if (p.nodePort) had.set(`${p.port}/${p.protocol ?? "TCP"}`, p.nodePort);
    const claimed: number[] = [];
    try {
      for (const [i, p] of (spec.ports ?? []).entries()) {
        const kept = had.get(`${p.port}/${p.protocol ?? "TCP"}`);
        if (p.nodePort === undefined && kept !== undefined) p.nodePort = kept;
        if (p.nodePort !== undefined && [...had.values()].includes(p.nodePort)) continue;
        if (p.nodePort !== undefined) {
          if (!this.nodePorts.contains(p.nodePort) || !(await this.nodePorts.claim(p.nodePort, owner))) {
            throw invalid("Service", svc.metadata.name!, [
              {
                field: `spec.ports[${i}].nodePort`,
                reason: "FieldValueInvalid",
                message: `Invalid value: ${p.nodePort}: provided port is already allocated or outside 30000-32767`,
              },
            ]);
          }
        } else p.nodePort = await this.nodePorts.allocate(owner);
        claimed.push(p.nodePort);
      }
    } catch (err) {
      for (const p of claimed) await this.nodePorts.release(p);
      throw err;
    }
    return claimed;
  }

  private async releaseNodePorts(svc: KObject | undefined, keep: KObject | undefined): Promise<void> {
    const ports = (o: KObject | undefined): number[] =>
      (((o?.spec ?? {}) as { ports?: { nodePort?: number }[] }).ports ?? [])
        .map((p) => p.nodePort)
        .filter((n): n is number => typeof n === "number");
    const still = new Set(ports(keep));
    for (const p of ports(svc)) if (!still.has(p)) await this.nodePorts.release(p);
  }

  /**
   * Writes `next` over `current` (read at current.metadata.resourceVersion). mode "status" takes
   * only the status from next; "main" keeps the stored status for kinds with a status subresource.
   */
  async update(
    info: ResourceInfo,
    current: KObject,
    next: KObject,
    mode: "main" | "status",
    dryRun = false,
  ): Promise<KObject> {
    const name = current.metadata.name!;
    const expectRv = next.metadata?.resourceVersion;
    if (expectRv && expectRv !== current.metadata.resourceVersion)
      throw conflict(info.plural, name, info.group);
    if (next.metadata?.name !== undefined && next.metadata.name !== name) {
      throw badRequest(
        `the name of the object (${String(next.metadata.name)}) does not match the name on the URL (${name})`,
      );
    }
    let obj: KObject;
    if (mode === "status") {
      obj = structuredClone(current);
      obj.status = next.status;
    } else {
      obj = structuredClone(next);
      obj.metadata = { ...(next.metadata ?? {}) };
      if (info.status) obj.status = current.status;
    }
    obj.apiVersion = groupVersion(info);
    obj.kind = info.kind;
    const meta = obj.metadata;
    const cur = current.metadata;
    meta.name = name;
    if (info.namespaced) meta.namespace = cur.namespace;
    meta.uid = cur.uid;
    meta.creationTimestamp = cur.creationTimestamp;
    if (cur.deletionTimestamp) {
      meta.deletionTimestamp = cur.deletionTimestamp;
      if (cur.deletionGracePeriodSeconds !== undefined)
        meta.deletionGracePeriodSeconds = cur.deletionGracePeriodSeconds;
    } else {
      delete meta.deletionTimestamp;
      delete meta.deletionGracePeriodSeconds;
    }
    delete meta.managedFields;
    delete meta.resourceVersion;
    if (info.kind === "Service") this.keepClusterIp(current, obj);
    if (info.kind === "Pod" && mode === "main") this.checkPodImmutable(current, obj);
    applyDefaults(info.kind, obj);
    const causes = validateObject(info.kind, obj, info.namespaced);
    if (causes.length) throw invalid(info.kind, name, causes, info.group);
    if (hasSpec(info)) {
      const gen = cur.generation ?? 1;
      meta.generation = stable(obj.spec) === stable(current.spec) ? gen : gen + 1;
    }
    const key = storageKey(info, cur.namespace, name);
    const rev = Number(current.metadata.resourceVersion);
    if (
      meta.deletionTimestamp &&
      (meta.finalizers ?? []).length === 0 &&
      !(info.kind === "Pod" && cur.deletionGracePeriodSeconds)
    ) {
      // The last finalizer is gone: the object goes away now.
      if (dryRun) return obj;
      const delRev = await this.store
        .delete(key, rev)
        .catch((err: unknown) => mapStoreError(err, info, name));
      await this.afterDelete(info, obj);
      return withVersion(obj, delRev);
    }
    if (dryRun) return withVersion(obj, rev);
    const claimedPorts =
      info.kind === "Service" && mode === "main" ? await this.assignNodePorts(obj, current) : [];
    let newRev: number;
    try {
      newRev = await this.store.update(key, obj, rev);
    } catch (err) {
      for (const p of claimedPorts) await this.nodePorts.release(p);
      mapStoreError(err, info, name);
    }
    if (info.kind === "Service") await this.releaseNodePorts(current, obj);
    return withVersion(obj, newRev);
  }

  private keepClusterIp(current: KObject, next: KObject): void {
    const curSpec = (current.spec ?? {}) as Record<string, unknown>;
    const spec = (next.spec ??= {}) as Record<string, unknown>;
    if (spec.clusterIP === undefined || spec.clusterIP === "") {
      spec.clusterIP = curSpec.clusterIP;
      if (curSpec.clusterIPs) spec.clusterIPs = curSpec.clusterIPs;
    } else if (spec.clusterIP !== curSpec.clusterIP) {
      throw invalid("Service", current.metadata.name!, [
        {
          field: "spec.clusterIP",
          reason: "FieldValueInvalid",
          message: `Invalid value: "${String(spec.clusterIP)}": field is immutable`,
        },
      ]);
    }
    for (const k of ["ipFamilies", "ipFamilyPolicy"])
      if (spec[k] === undefined && curSpec[k] !== undefined) spec[k] = curSpec[k];
  }

  private checkPodImmutable(current: KObject, next: KObject): void {
    // Pod spec is immutable except images (and nodeName set once through binding).
    const strip = (spec: unknown): unknown => {
      const s = structuredClone((spec ?? {}) as Record<string, unknown>);
      for (const list of ["containers", "initContainers"]) {
        for (const c of (s[list] as Record<string, unknown>[] | undefined) ?? []) delete c.image;
      }
      delete s.activeDeadlineSeconds;
      delete s.tolerations;
      return s;
    };
    const curSpec = structuredClone((current.spec ?? {}) as Record<string, unknown>);
    const nextSpec = structuredClone((next.spec ?? {}) as Record<string, unknown>);
    applyDefaults("Pod", { spec: nextSpec });
    if (stable(strip(curSpec)) !== stable(strip(nextSpec))) {
      throw invalid("Pod", current.metadata.name!, [
        {
          field: "spec",
          reason: "FieldValueForbidden",
          message:
            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds` or `spec.tolerations` (only additions to existing tolerations)",
        },
      ]);
    }
  }

  /** Deletes (or starts deleting) an object; returns the object as it stands afterwards. */
  async delete(
    info: ResourceInfo,
    namespace: string | undefined,
    name: string,
    opts: DeleteOptions,
  ): Promise<KObject> {
    for (let attempt = 0; ; attempt++) {
      const current = await this.get(info, namespace, name);
      try {
        return await this.deleteOnce(info, current, opts);
      } catch (err) {
        if (
          err instanceof ApiError &&
          err.reason === "Conflict" &&
          attempt < 5 &&
          !opts.preconditions?.resourceVersion
        )
          continue;
        throw err;
      }
    }
  }

  private async deleteOnce(info: ResourceInfo, current: KObject, opts: DeleteOptions): Promise<KObject> {
    const meta = current.metadata;
    const name = meta.name!;
    const pre = opts.preconditions;
    if (pre?.uid && pre.uid !== meta.uid) throw conflict(info.plural, name, info.group);
    if (pre?.resourceVersion && pre.resourceVersion !== meta.resourceVersion)
      throw conflict(info.plural, name, info.group);
    const key = storageKey(info, meta.namespace, name);
    const rev = Number(meta.resourceVersion);
    const next = structuredClone(current);
    const nm = next.metadata;
    const finalizers = [...(nm.finalizers ?? [])];
    // Recorded for the garbage collector, as Kubernetes does, so it can orphan or wait for dependents.
    if (opts.propagationPolicy === "Foreground" && !finalizers.includes("foregroundDeletion"))
      finalizers.push("foregroundDeletion");
    if (opts.propagationPolicy === "Orphan" && !finalizers.includes("orphan")) finalizers.push("orphan");
    if (info.kind === "Namespace") return this.deleteNamespace(current, opts.dryRun ?? false);
    let grace = 0;
    if (info.kind === "Pod") {
      const spec = (current.spec ?? {}) as Record<string, unknown>;
      grace = opts.gracePeriodSeconds ?? (spec.terminationGracePeriodSeconds as number | undefined) ?? 30;
      // An unscheduled pod has no containers to stop; and a terminated one has nothing left to stop.
      const status = (current.status ?? {}) as Record<string, unknown>;
      if (!spec.nodeName || status.phase === "Succeeded" || status.phase === "Failed") grace = 0;
      if (nm.deletionGracePeriodSeconds !== undefined && grace >= nm.deletionGracePeriodSeconds) {
        return current; // already terminating with a shorter or equal grace
      }
    }
    if (finalizers.length > 0 || grace > 0) {
      nm.finalizers = finalizers.length ? finalizers : undefined;
      if (!nm.finalizers) delete nm.finalizers;
      const now = Date.now();
      if (grace > 0) {
        nm.deletionTimestamp = new Date(now + grace * 1000).toISOString().replace(/\.\d+Z$/, "Z");
        nm.deletionGracePeriodSeconds = grace;
      } else {
        nm.deletionTimestamp ??= new Date(now).toISOString().replace(/\.\d+Z$/, "Z");
        nm.deletionGracePeriodSeconds ??= 0;
      }
      if (nm.generation !== undefined && !current.metadata.deletionTimestamp) nm.generation += 1;
      delete nm.resourceVersion;
      if (opts.dryRun) return next;
      const newRev = await this.store
        .update(key, next, rev)
        .catch((err: unknown) => mapStoreError(err, info, name));
      return withVersion(next, newRev);
    }
    if (opts.dryRun) return current;
    await this.store.delete(key, rev).catch((err: unknown) => mapStoreError(err, info, name));
    await this.afterDelete(info, current);
    return current;
  }

  private async afterDelete(info: ResourceInfo, obj: KObject): Promise<void> {
    if (info.kind !== "Service") return;
    const ip = ((obj.spec ?? {}) as Record<string, unknown>).clusterIP;
    if (typeof ip === "string" && ip !== "None" && ip !== "") await this.serviceIps.release(ip);
    await this.releaseNodePorts(obj, undefined);
  }

  /** Marks the namespace Terminating, then removes everything in it and the namespace itself. */
  private async deleteNamespace(current: KObject, dryRun: boolean): Promise<KObject> {
    const name = current.metadata.name!;
    if (SYSTEM_NAMESPACES.includes(name)) {
      throw new ApiError(
        403,
        "Forbidden",
        `namespace "${name}" is a system namespace and may not be deleted`,
      );
    }
    const info = RESOURCES.find((r) => r.kind === "Namespace")!;
    const next = structuredClone(current);
    next.metadata.deletionTimestamp ??= new Date().toISOString().replace(/\.\d+Z$/, "Z");
    next.status = { phase: "Terminating" };
    delete next.metadata.resourceVersion;
    if (dryRun) return next;
    const rev = await this.store
      .update(storageKey(info, undefined, name), next, Number(current.metadata.resourceVersion))
      .catch((err: unknown) => mapStoreError(err, info, name));
    void this.purgeNamespace(name).catch(() => undefined);
    return withVersion(next, rev);
  }

  private async purgeNamespace(name: string): Promise<void> {
    for (const info of RESOURCES.filter((r) => r.namespaced)) {
      const page = await this.store.list<KObject>(storageKey(info, name));
      for (const item of page.items) {
        await this.store.delete(storageKey(info, name, item.value.metadata.name)).catch(() => undefined);
        await this.afterDelete(info, item.value);
      }
    }
    await this.store.delete(`/registry/namespaces/${name}`).catch(() => undefined);
  }

  /**
   * Streams events after `resourceVersion` ("" or "0": the current objects as ADDED first).
   * Objects leaving the selection arrive as DELETED, as in Kubernetes.
   */
  async watch(
    info: ResourceInfo,
    namespace: string | undefined,
    sel: Selectors,
    resourceVersion: string | undefined,
    send: (ev: WatchEvent) => void,
    onEnd: (err?: ApiError) => void,
  ): Promise<{ stop: () => Promise<void>; lastRevision: () => number }> {
    const prefix = storageKey(info, namespace);
    const matches = (o: KObject | undefined): boolean =>
      !!o && matchesLabels(sel.labels, o.metadata.labels) && matchesFields(sel.fields, o);
    let from: number;
    if (!resourceVersion || resourceVersion === "0") {
      const current = await this.list(info, namespace, sel);
      for (const o of current.items) send({ type: "ADDED", object: o });
      from = Number(current.resourceVersion);
    } else {
      from = Number(resourceVersion);
      if (!Number.isInteger(from) || from < 0)
        throw badRequest(`invalid resourceVersion "${resourceVersion}"`);
    }
    let last = from;
    const onEvent = (ev: StoreEvent<KObject>): void => {
      last = ev.modRevision;
      if (ev.type === "put") {
        const obj = withVersion(ev.value, ev.modRevision);
        const now = matches(obj);
        const before = matches(ev.prev);
        if (now) send({ type: ev.prev && before ? "MODIFIED" : "ADDED", object: obj });
        else if (before) send({ type: "DELETED", object: obj });
      } else if (ev.prev && matches(ev.prev)) {
        send({ type: "DELETED", object: withVersion(ev.prev, ev.modRevision) });
      }
    };
    const onError = (err: Error): void => {
      if (err instanceof StoreError && err.reason === "Compacted")
        onEnd(gone(`too old resource version: ${from}`));
      else onEnd(new ApiError(500, "InternalError", `watch failed: ${err.message}`));
    };
    try {
      // etcd's progress notifications move the BOOKMARK resourceVersion on while nothing changes
      const onProgress = (rev: number): void => void (last = Math.max(last, rev));
      const stop = await this.watchCache(info).subscribe(prefix, from, onEvent, onError, onProgress);
      return { stop, lastRevision: () => last };
    } catch (err) {
      if (err instanceof StoreError && err.reason === "Compacted") {
        throw gone(`too old resource version: ${from}`);
      }
      throw err;
    }
  }

  private watchCache(info: ResourceInfo): WatchCache<KObject> {
    let cache = this.caches.get(info.plural);
    if (!cache) {
      cache = new WatchCache<KObject>(this.store, storageKey(info, undefined));
      this.caches.set(info.plural, cache);
    }
    return cache;
  }

  async close(): Promise<void> {
    for (const c of this.caches.values()) await c.close();
  }

  /**
   * kube-system/kube-dns on the tenth service address, as clusters conventionally have it. It has
   * no selector and no Endpoints: every lab-agent answers DNS itself and DNATs this address to its
   * own listener, so the Service is there for discovery (`kubectl get svc -n kube-system`) and to
   * keep the address from being handed to another Service.
   */
  private async ensureClusterDnsService(): Promise<void> {
    const ip = this.serviceIps.dnsServiceIp;
    if (!ip) return;
    const svcInfo = RESOURCES.find((r) => r.kind === "Service")!;
    await this.create(svcInfo, "kube-system", {
      apiVersion: "v1",
      kind: "Service",
      metadata: {
        name: "kube-dns",
        labels: {
          "k8s-app": "kube-dns",
          "kubernetes.io/cluster-service": "true",
          "kubernetes.io/name": "KubeDNS",
        },
      },
      spec: {
        clusterIP: ip,
        ports: [
          { name: "dns", port: 53, protocol: "UDP", targetPort: 53 },
          { name: "dns-tcp", port: 53, protocol: "TCP", targetPort: 53 },
        ],
      },
    }).catch((err: unknown) => {
      if (!(err instanceof ApiError && (err.reason === "AlreadyExists" || err.reason === "Invalid")))
        throw err;
    });
  }

  /** Default namespaces, the `kubernetes` service and the cluster DNS service, idempotently. */
  async ensureDefaults(advertiseAddress: string, securePort: number): Promise<void> {
    const nsInfo = RESOURCES.find((r) => r.kind === "Namespace")!;
    for (const ns of SYSTEM_NAMESPACES) {
      await this.create(nsInfo, undefined, {
        apiVersion: "v1",
        kind: "Namespace",
        metadata: { name: ns },
      }).catch((err: unknown) => {
        if (!(err instanceof ApiError && err.reason === "AlreadyExists")) throw err;
      });
    }
    const svcInfo = RESOURCES.find((r) => r.kind === "Service")!;
    const ip = this.serviceIps.kubernetesServiceIp;
    await this.create(svcInfo, "default", {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "kubernetes", labels: { component: "apiserver", provider: "kubernetes" } },
      spec: { clusterIP: ip, ports: [{ name: "https", port: 443, protocol: "TCP", targetPort: securePort }] },
    }).catch((err: unknown) => {
      if (!(err instanceof ApiError && (err.reason === "AlreadyExists" || err.reason === "Invalid")))
        throw err;
    });
    await this.ensureClusterDnsService();
    const epInfo = RESOURCES.find((r) => r.kind === "Endpoints")!;
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const ep = await this.get(epInfo, "default", "kubernetes").catch(() => undefined);
        const subsets = (ep?.subsets as { addresses?: { ip: string }[] }[] | undefined) ?? [];
        const addresses = subsets[0]?.addresses ?? [];
        if (addresses.some((a) => a.ip === advertiseAddress)) return;
        const body: KObject = {
          apiVersion: "v1",
          kind: "Endpoints",
          metadata: { name: "kubernetes" },
          subsets: [
            {
              addresses: [...addresses, { ip: advertiseAddress }],
              ports: [{ name: "https", port: securePort, protocol: "TCP" }],
            },
          ],
        };
        if (ep) await this.update(epInfo, ep, { ...body, metadata: { ...ep.metadata } }, "main");
        else await this.create(epInfo, "default", body);
        return;
      } catch (err) {
        if (!(err instanceof ApiError && (err.reason === "Conflict" || err.reason === "AlreadyExists")))
          throw err;
      }
    }
  }
}
