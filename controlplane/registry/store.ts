import { randomUUID } from "node:crypto";
import { groupVersion, RESOURCES, type ResourceInfo } from "../../api/resources.ts";
import { matchesFields, matchesLabels } from "../../api/selectors.ts";
import type { ApiError } from "../../api/status.ts";
import { badRequest, conflict, invalid, notFound } from "../../api/status.ts";
import { stableStringify } from "../../lib/stable-json.ts";
import { NodePortAllocator, type ServiceIpAllocator } from "../service-ips.ts";
import { managedFieldsAfterWrite, type FieldsWrite } from "./apply/index.ts";
import type { EtcdStore } from "../storage/etcd-store.ts";
import { WatchCache } from "../storage/watch-cache.ts";
import { ensureClusterDefaults } from "./cluster-defaults.ts";
import { NamespaceGate } from "./namespace-gate.ts";
import type { Strategy, StrategyContext } from "./strategy.ts";
import { strategyFor } from "./strategies/index.ts";
import {
  isWriteConflict,
  mapStoreError,
  randomSuffix,
  storageKey,
  timestamp,
  FROM_ETCD,
  withVersion,
  type DeleteOptions,
  type KObject,
  type Selectors,
  type UpdateMode,
  type WatchEvent,
} from "./types.ts";
import { watchObjects, type WatchHandle } from "./watch.ts";
import { copyOf } from "./object-json.ts";
import { bindPod } from "./binding.ts";
import { deleteStep } from "./deletion.ts";

interface ContinueToken {
  rv: number;
  start: string;
}

export interface GuaranteedUpdateOptions {
  mode?: UpdateMode;
  dryRun?: boolean;
  /** Reads and compare-and-swaps tried before the last conflict goes to the caller (default 8). */
  attempts?: number;
  /** Who writes, for metadata.managedFields (none: the entries stay as they are). */
  fields?: FieldsWrite;
}

/**
 * The generic store of the API (kube-apiserver's registry.Store): identity, versions, storage,
 * finalizers and graceful deletion for every kind, with each kind's semantics in its Strategy
 * (./strategies). Every write is validated by the kind's strategy before it reaches etcd.
 */
export class Registry {
  private readonly caches = new Map<string, WatchCache<KObject>>();
  private readonly strategies = new Map<string, Strategy>();
  private readonly ctx: StrategyContext;
  private readonly namespaces: NamespaceGate;

  constructor(
    readonly store: EtcdStore,
    private readonly serviceIps: ServiceIpAllocator,
  ) {
    this.ctx = {
      store,
      serviceIps,
      nodePorts: new NodePortAllocator(store),
      afterDelete: (info, obj) => this.strategy(info).afterDelete(obj),
    };
    // The first entry of a plural is its storage version (a later one is served converted).
    for (const info of RESOURCES)
      if (!this.strategies.has(info.plural)) this.strategies.set(info.plural, strategyFor(info, this.ctx));
    const source = { list: this.list.bind(this), cache: this.watchCache.bind(this) };
    this.namespaces = new NamespaceGate(store, source);
  }

  private strategy(info: ResourceInfo): Strategy {
    return this.strategies.get(info.plural) ?? strategyFor(info, this.ctx);
  }

  async get(info: ResourceInfo, namespace: string | undefined, name: string): Promise<KObject> {
    const got = await this.store.get<KObject>(storageKey(info, namespace, name));
    if (!got) throw notFound(info.plural, name, info.group);
    return withVersion(got.value, got.modRevision);
  }

  /**
   * The object an update starts from. Unless `fresh`, the watch cache's newest version when it
   * has one, saving the etcd read (kube-apiserver's GuaranteedUpdate with a cached existing
   * object): it may be behind etcd, never ahead, and a write from it is a compare-and-swap on its
   * mod revision, so a stale one fails and the caller reads again with `fresh` (see
   * servedFromCache). A private copy: the caller may change it.
   */
  async getForUpdate(
    info: ResourceInfo,
    namespace: string | undefined,
    name: string,
    fresh = false,
  ): Promise<KObject> {
    if (!fresh) {
      const hit = this.caches.get(info.plural)?.recent(storageKey(info, namespace, name));
      if (hit) {
        const obj = withVersion(copyOf(hit.value), hit.modRevision);
        this.fromCache.add(obj);
        return obj;
      }
    }
    return this.get(info, namespace, name);
  }

  private readonly fromCache = new WeakSet<object>();

  /**
   * Whether getForUpdate served `obj` from the watch cache: then any failure of an update from it
   * (a lost compare-and-swap, a precondition, validation, admission) may come from stale data and
   * is tried once more on a fresh read, as upstream does, so clients see what etcd holds.
   */
  servedFromCache(obj: KObject): boolean {
    return this.fromCache.has(obj);
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
    // The watch cache starts before the first page is read, so a watch from this list's
    // resourceVersion is inside its window (kube-apiserver's caches run from the start).
    if (!cont)
      await this.watchCache(info)
        .start()
        .catch(() => undefined);
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
      const token: ContinueToken = { rv: page.revision, start: page.continueKey };
      out.continue = Buffer.from(JSON.stringify(token)).toString("base64url");
    }
    return out;
  }

  namespaceMustAccept(namespace: string): Promise<void> {
    return this.namespaces.mustAccept(namespace);
  }

  /** Fills identity fields, defaults and validates; throws 422 listing every cause. */
  private prepareNew(info: ResourceInfo, namespace: string | undefined, body: KObject): KObject {
    const strategy = this.strategy(info);
    const obj = structuredClone(body);
    obj.apiVersion = groupVersion(info);
    obj.kind = info.kind;
    if (typeof obj.metadata !== "object" || obj.metadata === null || Array.isArray(obj.metadata))
      obj.metadata = {};
    const meta = obj.metadata;
    if (!meta.name && typeof meta.generateName === "string" && meta.generateName)
      meta.name = meta.generateName + randomSuffix();
    if (info.namespaced) meta.namespace = namespace;
    else delete meta.namespace;
    meta.uid = randomUUID();
    meta.creationTimestamp = timestamp();
    for (const k of [
      "resourceVersion",
      "deletionTimestamp",
      "deletionGracePeriodSeconds",
      "managedFields",
      "selfLink",
    ])
      delete meta[k];
    if (strategy.bumpsGeneration) meta.generation = 1;
    else delete meta.generation;
    strategy.prepareForCreate(obj);
    strategy.defaults(obj);
    const causes = strategy.validate(obj);
    if (causes.length) throw invalid(info.kind, objectName(meta), causes, info.group);
    return obj;
  }

  async create(
    info: ResourceInfo,
    namespace: string | undefined,
    body: KObject,
    dryRun = false,
    fields?: FieldsWrite,
  ): Promise<KObject> {
    if (info.namespaced) {
      if (!namespace) throw badRequest("a namespace is required for namespaced resources");
      await this.namespaceMustAccept(namespace);
    }
    const obj = this.prepareNew(info, namespace, body);
    setManagedFields(obj, managedFieldsAfterWrite(info, undefined, obj, fields));
    const name = obj.metadata.name!;
    const rollback = await this.strategy(info).beforeCreate(obj, dryRun);
    if (dryRun) return obj;
    try {
      const rev = await this.store.create(storageKey(info, namespace, name), obj);
      return withVersion(obj, rev);
    } catch (err) {
      await rollback();
      mapStoreError(err, info, name);
    }
  }

  /**
   * Writes `next` over `current` (read at current.metadata.resourceVersion), once. mode "status"
   * takes only the status from next; "main" keeps the stored status for kinds with a status
   * subresource. A resourceVersion in `next` is a precondition.
   */
  async update(
    info: ResourceInfo,
    current: KObject,
    next: KObject,
    mode: UpdateMode,
    dryRun = false,
    fields?: FieldsWrite,
  ): Promise<KObject> {
    const strategy = this.strategy(info);
    const name = current.metadata.name!;
    const expectRv = next.metadata?.resourceVersion;
    if (expectRv && expectRv !== current.metadata.resourceVersion)
      throw conflict(info.plural, name, info.group);
    if (next.metadata?.name !== undefined && next.metadata.name !== name) {
      throw badRequest(
        `the name of the object (${String(next.metadata.name)}) does not match the name on the URL (${name})`,
      );
    }
    const obj = mergeForUpdate(info, current, next, mode);
    const meta = obj.metadata;
    const cur = current.metadata;
    strategy.prepareForUpdate(obj, current, mode);
    strategy.defaults(obj);
    const causes = strategy.validateUpdate(obj, current);
    if (causes.length) throw invalid(info.kind, name, causes, info.group);
    setManagedFields(obj, managedFieldsAfterWrite(info, current, obj, fields));
    if (strategy.bumpsGeneration) {
      const gen = cur.generation ?? 1;
      meta.generation = stableStringify(obj.spec) === stableStringify(current.spec) ? gen : gen + 1;
    }
    const key = storageKey(info, cur.namespace, name);
    const rev = Number(cur.resourceVersion);
    if (
      meta.deletionTimestamp &&
      (meta.finalizers ?? []).length === 0 &&
      !strategy.waitsAfterFinalizers(current)
    ) {
      // The last finalizer is gone: the object goes away now.
      if (dryRun) return obj;
      const delRev = await this.store
        .delete(key, rev)
        .catch((err: unknown) => mapStoreError(err, info, name));
      await strategy.afterDelete(obj);
      return withVersion(obj, delRev);
    }
    if (dryRun) return withVersion(obj, rev);
    const rollback = await strategy.beforeUpdate(obj, current, mode);
    let newRev: number;
    try {
      newRev = await this.store.update(key, obj, rev);
    } catch (err) {
      await rollback();
      mapStoreError(err, info, name);
    }
    await strategy.afterUpdate(obj, current);
    return withVersion(obj, newRev);
  }

  /**
   * kube-apiserver's GuaranteedUpdate: reads the object, lets `mutate` change a copy, and
   * compare-and-swaps it on the resourceVersion read; a write that lands in between makes it read
   * and mutate again, at most `attempts` times. A mutation that changes nothing writes nothing.
   * A resourceVersion `mutate` leaves in the object is the caller's precondition (a Conflict).
   */
  guaranteedUpdate(
    info: ResourceInfo,
    namespace: string | undefined,
    name: string,
    mutate: (current: KObject) => KObject | Promise<KObject>,
    opts: GuaranteedUpdateOptions = {},
  ): Promise<KObject> {
    return this.readModifyWrite(
      info,
      namespace,
      name,
      opts.attempts,
      async (current, cached) => {
        const next = await mutate(structuredClone(current));
        if (stableStringify(next) === stableStringify(current)) {
          if (cached) throw FROM_ETCD; // nothing to write: answer with etcd's version, not the cache's
          return current;
        }
        return this.update(info, current, next, opts.mode ?? "main", opts.dryRun ?? false, opts.fields);
      },
      opts.dryRun,
    );
  }

  /**
   * The one retry loop: `step` on the current object, again while it loses a compare-and-swap.
   * The first read may be the watch cache's copy (getForUpdate, `cached`); any failure of a step
   * on it is tried again on etcd's, and a step that would write nothing and answer with the copy
   * throws FROM_ETCD instead, so a stale copy never reaches the caller. Dry runs read etcd.
   */
  private async readModifyWrite<T>(
    info: ResourceInfo,
    namespace: string | undefined,
    name: string,
    attempts = 8,
    step: (current: KObject, cached: boolean) => Promise<T>,
    dryRun = false,
  ): Promise<T> {
    let fresh = dryRun;
    for (let attempt = 1; ; attempt++) {
      const current = await this.getForUpdate(info, namespace, name, fresh);
      const cached = !fresh && this.servedFromCache(current);
      fresh = true;
      try {
        return await step(current, cached);
      } catch (err) {
        if (cached) {
          attempt--;
          continue;
        }
        if (!isWriteConflict(err) || attempt >= attempts) throw err;
      }
    }
  }

  /**
   * The binding subresource: sets a pending pod's spec.nodeName once, with its PodScheduled
   * condition, validated like every write (a node name must be a DNS subdomain).
   */
  bind(namespace: string, name: string, nodeName: string): Promise<KObject> {
    const info = RESOURCES.find((r) => r.kind === "Pod")!;
    return this.guaranteedUpdate(info, namespace, name, (pod) => bindPod(pod, name, nodeName), {
      mode: "binding",
    });
  }

  /** Deletes (or starts deleting) an object; returns the object as it stands afterwards. */
  delete(
    info: ResourceInfo,
    namespace: string | undefined,
    name: string,
    opts: DeleteOptions,
  ): Promise<KObject> {
    return this.readModifyWrite(
      info,
      namespace,
      name,
      undefined,
      (current, cached) => deleteStep(this.store, this.strategy(info), this.ctx, info, current, opts, cached),
      opts.dryRun,
    );
  }

  watch(
    info: ResourceInfo,
    namespace: string | undefined,
    sel: Selectors,
    resourceVersion: string | undefined,
    send: (ev: WatchEvent) => void,
    onEnd: (err?: ApiError) => void,
  ): Promise<WatchHandle> {
    const source = { list: this.list.bind(this), cache: this.watchCache.bind(this) };
    return watchObjects(source, info, namespace, sel, resourceVersion, send, onEnd);
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

  /** Default namespaces, the `kubernetes` service and the cluster DNS service, idempotently. */
  ensureDefaults(advertiseAddress: string, securePort: number): Promise<void> {
    return ensureClusterDefaults(this, this.serviceIps, advertiseAddress, securePort);
  }
}

function setManagedFields(obj: KObject, entries: unknown[] | undefined): void {
  if (entries) obj.metadata.managedFields = entries;
  else delete obj.metadata.managedFields;
}

function objectName(meta: KObject["metadata"]): string {
  const n = meta.name ?? meta.generateName;
  return typeof n === "string" ? n : "";
}

/** The object an update stores before the strategy runs: identity and deletion state from `current`. */
function mergeForUpdate(info: ResourceInfo, current: KObject, next: KObject, mode: UpdateMode): KObject {
  let obj: KObject;
  if (mode === "status") {
    obj = structuredClone(current);
    obj.status = next.status;
  } else {
    obj = structuredClone(next);
    obj.metadata = { ...(next.metadata ?? {}) };
    if (info.status && mode === "main") obj.status = current.status;
  }
  obj.apiVersion = groupVersion(info);
  obj.kind = info.kind;
  const meta = obj.metadata;
  const cur = current.metadata;
  meta.name = cur.name;
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
  return obj;
}
