/**
 * An in-memory object store with the semantics control loops rely on: resourceVersion per write,
 * 409 on a stale update or a duplicate create, and watch streams fed from a change log (410 when
 * asked for a version older than the log keeps). Used by unit tests of the loop machinery.
 */
import type { V1Lease } from "@kubernetes/client-node";
import type { KubeObject, ListWatcher, WatchEvent } from "../../api/informer.ts";
import { objectKey } from "../../api/informer.ts";
import type { LeaseStore } from "../../api/leader-election.ts";
import type { ObjectWriter } from "../../controlplane/loop-client.ts";

export class StatusError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

export class MemoryStore<T extends KubeObject> {
  readonly objects = new Map<string, T>();
  private rv = 0;
  private log: { rv: number; ev: WatchEvent<T> }[] = [];
  private listeners = new Set<() => void>();
  /** Oldest version a watch may start from; older → 410. */
  compactedRv = 0;

  private bump(obj: T, type: WatchEvent<T>["type"]): T {
    this.rv++;
    const copy = structuredClone({ ...obj, metadata: { ...obj.metadata, resourceVersion: String(this.rv) } });
    this.log.push({ rv: this.rv, ev: { type, object: copy } });
    for (const l of this.listeners) l();
    return copy;
  }

  create(obj: T): T {
    const key = objectKey(obj);
    if (this.objects.has(key)) throw new StatusError(409, `${key} already exists`);
    const out = this.bump(obj, "ADDED");
    this.objects.set(key, out);
    return structuredClone(out);
  }

  update(obj: T): T {
    const key = objectKey(obj);
    const cur = this.objects.get(key);
    if (!cur) throw new StatusError(404, `${key} not found`);
    if (obj.metadata?.resourceVersion && obj.metadata.resourceVersion !== cur.metadata?.resourceVersion)
      throw new StatusError(409, `${key}: the object has been modified`);
    const out = this.bump(obj, "MODIFIED");
    this.objects.set(key, out);
    return structuredClone(out);
  }

  remove(key: string): void {
    const cur = this.objects.get(key);
    if (!cur) throw new StatusError(404, `${key} not found`);
    this.objects.delete(key);
    this.bump(cur, "DELETED");
  }

  /** Drops the change log, so watches from older versions get 410. */
  compact(): void {
    this.compactedRv = this.rv;
    this.log = [];
  }

  bookmark(): void {
    this.rv++;
    this.log.push({
      rv: this.rv,
      ev: { type: "BOOKMARK", object: { metadata: { resourceVersion: String(this.rv) } } as T },
    });
    for (const l of this.listeners) l();
  }

  listWatcher(): ListWatcher<T> & { lists: number; watches: string[] } {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the generator below needs the store, not the list-watcher
    const store = this;
    const lw = {
      lists: 0,
      watches: [] as string[],
      async list() {
        lw.lists++;
        return {
          items: [...store.objects.values()].map((o) => structuredClone(o)),
          resourceVersion: String(store.rv),
        };
      },
      async *watch(rv: string, signal?: AbortSignal): AsyncIterable<WatchEvent<T>> {
        lw.watches.push(rv);
        const from = Number(rv);
        if (from < store.compactedRv) throw new StatusError(410, "too old resource version");
        let next = from;
        while (!signal?.aborted) {
          // The log is sorted by version: binary-search the first event after `next`.
          let lo = 0;
          let hi = store.log.length;
          while (lo < hi) {
            const mid = (lo + hi) >> 1;
            if (store.log[mid]!.rv > next) hi = mid;
            else lo = mid + 1;
          }
          const pending = store.log.slice(lo);
          for (const e of pending) {
            next = e.rv;
            yield structuredClone(e.ev);
          }
          if (from < store.compactedRv) return;
          // Written while the consumer held an event (no listener then): deliver before sleeping.
          if ((store.log.at(-1)?.rv ?? 0) > next) continue;
          await new Promise<void>((resolve) => {
            const wake = (): void => {
              store.listeners.delete(wake);
              signal?.removeEventListener("abort", wake);
              resolve();
            };
            store.listeners.add(wake);
            signal?.addEventListener("abort", wake, { once: true });
          });
          if (store.compactedRv > next) return;
        }
      },
    };
    return lw;
  }
}

export function memoryLeaseStore(
  store = new MemoryStore<V1Lease>(),
): LeaseStore & { store: MemoryStore<V1Lease> } {
  return {
    store,
    async get(ns, name) {
      const l = store.objects.get(`${ns}/${name}`);
      return l ? structuredClone(l) : undefined;
    },
    async create(lease) {
      return store.create(lease);
    },
    async update(lease) {
      return store.update(lease);
    },
  };
}

/**
 * A control loop's ObjectWriter over in-memory stores, one per resource; created objects get a uid,
 * events are accepted and dropped.
 */
/** An ObjectWriter over in-memory stores, by resource (`{ pods, replicasets: rss }`). */
export function memoryWriter(stores: Record<string, object>): ObjectWriter {
  const store = (r: string): MemoryStore<KubeObject> => {
    const s = stores[r] as MemoryStore<KubeObject> | undefined;
    if (!s) throw new Error(`memoryWriter: no store for ${r}`);
    return s;
  };
  return {
    async get(r: string, ns: string, name: string) {
      return store(r).objects.get(`${ns}/${name}`);
    },
    async create(r: string, _ns: string, o: KubeObject) {
      return r === "events"
        ? o
        : store(r).create({ ...o, metadata: { ...o.metadata, uid: `uid-${Math.random()}` } });
    },
    async update(r: string, _ns: string, o: KubeObject) {
      return store(r).update(o);
    },
    async updateStatus(r: string, _ns: string, o: KubeObject) {
      return store(r).update(o);
    },
    async delete(r: string, ns: string, name: string) {
      store(r).remove(`${ns}/${name}`);
    },
  } as unknown as ObjectWriter;
}
