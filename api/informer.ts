/**
 * Informer: a cache of one resource kept current by list + watch, as client-go's reflector and
 * @kubernetes/client-node's cache.ts. List, then watch from the list's resourceVersion; when a watch
 * ends, watch again from the last version seen; on 410 Gone relist; BOOKMARK events only advance
 * the version. The cache updates are pure exported functions.
 */
import { sleep } from "../lib/sleep.ts";

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
}
export interface KubeObject {
  metadata?: ObjectMeta;
}

export type WatchEventType = "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
export interface WatchEvent<T> {
  type: WatchEventType;
  /** For ERROR a `Status` object (code 410 = the version is too old). */
  object: T;
}
export interface ListResult<T> {
  items: T[];
  resourceVersion: string;
}
/** The two calls an informer needs; the typed REST client provides them per resource. */
export interface ListWatcher<T> {
  list(signal?: AbortSignal): Promise<ListResult<T>>;
  watch(resourceVersion: string, signal?: AbortSignal): AsyncIterable<WatchEvent<T>>;
}

export type Cache<T> = Map<string, T>;

/** `namespace/name` for namespaced objects, `name` for cluster-scoped ones. */
export function objectKey(obj: KubeObject): string {
  const ns = obj.metadata?.namespace;
  const name = obj.metadata?.name ?? "";
  return ns ? `${ns}/${name}` : name;
}

export function splitKey(key: string): { namespace?: string; name: string } {
  const i = key.indexOf("/");
  return i < 0 ? { name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

/** Puts obj in the cache; returns the previous version, if any. */
export function addOrUpdateObject<T extends KubeObject>(cache: Cache<T>, obj: T): T | undefined {
  const key = objectKey(obj);
  const old = cache.get(key);
  cache.set(key, obj);
  return old;
}

/** Removes obj from the cache; returns what was cached, if anything. */
export function deleteObject<T extends KubeObject>(cache: Cache<T>, obj: T): T | undefined {
  const key = objectKey(obj);
  const old = cache.get(key);
  cache.delete(key);
  return old;
}

export interface CacheDelta<T> {
  added: T[];
  updated: { old: T; obj: T }[];
  deleted: T[];
}

/** Replaces the cache's content with a fresh list and says what changed (for a relist). */
export function replaceAll<T extends KubeObject>(cache: Cache<T>, items: T[]): CacheDelta<T> {
  const delta: CacheDelta<T> = { added: [], updated: [], deleted: [] };
  const seen = new Set<string>();
  for (const obj of items) {
    const key = objectKey(obj);
    seen.add(key);
    const old = cache.get(key);
    cache.set(key, obj);
    if (!old) delta.added.push(obj);
    else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion)
      delta.updated.push({ old, obj });
  }
  for (const [key, old] of [...cache]) {
    if (!seen.has(key)) {
      cache.delete(key);
      delta.deleted.push(old);
    }
  }
  return delta;
}

/** True for a 410 Gone, whether thrown by the client or sent as a watch ERROR event. */
export function isGone(errOrStatus: unknown): boolean {
  if (!errOrStatus || typeof errOrStatus !== "object") return false;
  const e = errOrStatus as { code?: unknown; statusCode?: unknown; status?: unknown; body?: unknown };
  if (e.code === 410 || e.statusCode === 410 || e.status === 410) return true;
  if (e.body && typeof e.body === "object") return isGone(e.body);
  return false;
}

export interface InformerHandlers<T> {
  add?: (obj: T) => void;
  update?: (old: T, obj: T) => void;
  delete?: (obj: T) => void;
}

export interface InformerOptions {
  /** Delay before re-watching after an error (doubles up to maxRetryDelayMs, default 30 s). */
  retryDelayMs?: number;
  maxRetryDelayMs?: number;
  onError?: (err: unknown) => void;
}

/** An index of the cache: the values an object is filed under (e.g. a pod's spec.nodeName). */
export type IndexFunc<T> = (obj: T) => string[];

interface CacheIndex<T> {
  fn: IndexFunc<T>;
  /** value -> keys of the objects filed under it. */
  byValue: Map<string, Set<string>>;
  /** key -> the values its object is filed under. */
  byKey: Map<string, string[]>;
}

const NAMESPACE_INDEX = "\0namespace";

export class Informer<T extends KubeObject> {
  readonly cache: Cache<T> = new Map();
  private handlers: InformerHandlers<T>[] = [];
  private readonly indexes = new Map<string, CacheIndex<T>>();
  private resourceVersion = "";
  private synced = false;
  private syncWaiters: (() => void)[] = [];
  /** Something was listed or received since the last error: the next retry starts from the initial delay. */
  private progressed = false;

  constructor(
    private readonly lw: ListWatcher<T>,
    private readonly opts: InformerOptions = {},
  ) {
    // list(namespace) reads this index instead of copying and filtering the whole cache.
    this.addIndex(NAMESPACE_INDEX, (o) =>
      o.metadata?.namespace === undefined ? [] : [o.metadata.namespace],
    );
  }

  on(handlers: InformerHandlers<T>): void {
    this.handlers.push(handlers);
  }

  /**
   * Keeps an index of the cache (client-go's Indexer): byIndex(name, value) then costs the
   * objects filed under value instead of a scan of the whole cache.
   */
  addIndex(name: string, fn: IndexFunc<T>): void {
    const idx: CacheIndex<T> = { fn, byValue: new Map(), byKey: new Map() };
    this.indexes.set(name, idx);
    for (const [key, obj] of this.cache) this.fileUnder(idx, key, obj);
  }

  /** The cached objects the named index files under value. */
  byIndex(name: string, value: string): T[] {
    const idx = this.indexes.get(name);
    if (!idx) throw new Error(`informer has no index ${JSON.stringify(name)}`);
    const out: T[] = [];
    for (const key of idx.byValue.get(value) ?? []) {
      const obj = this.cache.get(key);
      if (obj) out.push(obj);
    }
    return out;
  }

  private fileUnder(idx: CacheIndex<T>, key: string, obj: T | undefined): void {
    const values = obj ? idx.fn(obj) : [];
    const before = idx.byKey.get(key) ?? [];
    // Filed as before (most updates): nothing to move, and the key keeps its place in the order.
    if (values.length === before.length && values.every((v, i) => v === before[i])) return;
    for (const v of before) {
      const keys = idx.byValue.get(v);
      keys?.delete(key);
      if (keys?.size === 0) idx.byValue.delete(v);
    }
    idx.byKey.delete(key);
    if (values.length === 0) return;
    idx.byKey.set(key, values);
    for (const v of values) {
      let keys = idx.byValue.get(v);
      if (!keys) idx.byValue.set(v, (keys = new Set()));
      keys.add(key);
    }
  }

  private reindex(key: string): void {
    for (const idx of this.indexes.values()) this.fileUnder(idx, key, this.cache.get(key));
  }

  get lastResourceVersion(): string {
    return this.resourceVersion;
  }

  hasSynced(): boolean {
    return this.synced;
  }

  /** Resolves after the first list has filled the cache. */
  waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((r) => this.syncWaiters.push(r));
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  /** The cached objects, or those of one namespace (from an index: no scan of the others). */
  list(namespace?: string): T[] {
    return namespace === undefined ? [...this.cache.values()] : this.byIndex(NAMESPACE_INDEX, namespace);
  }

  /** Runs until the signal aborts. Errors are reported through onError and retried. */
  async run(signal: AbortSignal): Promise<void> {
    let delay = this.opts.retryDelayMs ?? 500;
    const initialDelay = delay;
    while (!signal.aborted) {
      try {
        if (this.resourceVersion === "") await this.relist(signal);
        const gone = await this.watchOnce(signal);
        if (gone) this.resourceVersion = "";
        delay = initialDelay;
      } catch (err) {
        if (signal.aborted) return;
        if (isGone(err)) {
          this.resourceVersion = "";
          continue;
        }
        this.opts.onError?.(err);
        if (this.progressed) delay = initialDelay;
        this.progressed = false;
        await sleep(delay, signal);
        delay = Math.min(delay * 2, this.opts.maxRetryDelayMs ?? 30_000);
      }
    }
  }

  private async relist(signal: AbortSignal): Promise<void> {
    const res = await this.lw.list(signal);
    const delta = replaceAll(this.cache, res.items);
    for (const idx of this.indexes.values()) {
      idx.byValue.clear();
      idx.byKey.clear();
      for (const [key, obj] of this.cache) this.fileUnder(idx, key, obj);
    }
    this.resourceVersion = res.resourceVersion;
    this.progressed = true;
    for (const o of delta.added) this.emit("add", o);
    for (const u of delta.updated) this.emit("update", u.obj, u.old);
    for (const o of delta.deleted) this.emit("delete", o);
    if (!this.synced) {
      this.synced = true;
      for (const w of this.syncWaiters.splice(0)) w();
    }
  }

  /** Consumes one watch stream; returns true when the server said the version is gone. */
  private async watchOnce(signal: AbortSignal): Promise<boolean> {
    for await (const ev of this.lw.watch(this.resourceVersion, signal)) {
      if (signal.aborted) return false;
      if (ev.type === "ERROR") {
        if (isGone(ev.object)) return true;
        throw Object.assign(new Error("watch error"), { status: ev.object });
      }
      this.progressed = true;
      const rv = ev.object.metadata?.resourceVersion;
      if (rv) this.resourceVersion = rv;
      if (ev.type === "BOOKMARK") continue;
      if (ev.type === "DELETED") {
        const old = deleteObject(this.cache, ev.object);
        if (this.indexes.size > 0) this.reindex(objectKey(ev.object));
        this.emit("delete", old ?? ev.object);
      } else {
        const old = addOrUpdateObject(this.cache, ev.object);
        if (this.indexes.size > 0) this.reindex(objectKey(ev.object));
        if (old) this.emit("update", ev.object, old);
        else this.emit("add", ev.object);
      }
    }
    return false;
  }

  private emit(kind: "add" | "update" | "delete", obj: T, old?: T): void {
    for (const h of this.handlers) {
      try {
        if (kind === "add") h.add?.(obj);
        else if (kind === "update") h.update?.(old as T, obj);
        else h.delete?.(obj);
      } catch (err) {
        this.opts.onError?.(err);
      }
    }
  }
}
