import { Etcd3, Range } from "etcd3";
import type { IOptions } from "etcd3";

/** A stored value with the etcd mod revision it was read or written at. */
export interface Versioned<T> {
  value: T;
  modRevision: number;
}

export interface ListPage<T> {
  items: Versioned<T>[];
  /** Store revision the list was read at (the list's resourceVersion). */
  revision: number;
  /** Opaque key to resume from; absent on the last page. */
  continueKey?: string;
}

export type StoreEvent<T> =
  | { type: "put"; key: string; value: T; prev: T | undefined; modRevision: number }
  | { type: "delete"; key: string; prev: T | undefined; modRevision: number };

/** Errors the apiserver maps to Kubernetes Status codes. */
export class StoreError extends Error {
  constructor(
    readonly reason: "Conflict" | "AlreadyExists" | "NotFound" | "Compacted",
    message: string,
  ) {
    super(message);
  }
}

function isCompactedError(err: unknown): boolean {
  return err instanceof Error && /compacted/i.test(err.message);
}

/**
 * A unary etcd call without an answer this long fails and is retried on another member (etcd3's
 * default policy: 3 attempts over the shuffled members, a member's circuit opens after 3 failures).
 */
export const ETCD_CALL_TIMEOUT_MS = 8_000;
/** How long stopping a watch waits for etcd to confirm the cancel. */
const WATCH_CANCEL_WAIT_MS = 2_000;

/**
 * JSON objects in etcd. Every write is one transaction comparing the key's mod revision, so a
 * writer holding a stale revision gets a Conflict instead of overwriting someone else's change.
 */
export class EtcdStore {
  readonly client: Etcd3;

  constructor(options: IOptions) {
    this.client = new Etcd3({
      // A member that vanished without closing its connections (a powered-off master) held every
      // call sent to it until TCP gave up, minutes later: with 3 members, a third of lab-server's
      // requests hung and a new controller leader took 105 s. A deadline on every unary call moves
      // it to another member; keepalive pings close a silent connection within 15 s (etcd accepts
      // pings every 5 s or slower, and only on connections with calls: the default here too).
      defaultCallOptions: (c) => (c.isStream ? {} : { deadline: Date.now() + ETCD_CALL_TIMEOUT_MS }),
      ...options,
      grpcOptions: {
        "grpc.keepalive_time_ms": 10_000,
        "grpc.keepalive_timeout_ms": 5_000,
        ...options.grpcOptions,
      },
    });
  }

  async close(): Promise<void> {
    this.client.close();
  }

  async revision(): Promise<number> {
    const res = await this.client.get("\0").exec();
    return Number(res.header.revision);
  }

  async get<T>(key: string): Promise<Versioned<T> | undefined> {
    const res = await this.client.get(key).exec();
    const kv = res.kvs[0];
    if (!kv) return undefined;
    return { value: JSON.parse(kv.value.toString()) as T, modRevision: Number(kv.mod_revision) };
  }

  /** One page of keys under prefix; continuation keeps reading at the first page's revision. */
  async list<T>(
    prefix: string,
    opts: { limit?: number; continueKey?: string; revision?: number } = {},
  ): Promise<ListPage<T>> {
    const end = Range.prefix(prefix).end;
    const start = opts.continueKey !== undefined ? opts.continueKey + "\0" : prefix;
    let builder = this.client.getAll().inRange(new Range(start, end));
    if (opts.limit && opts.limit > 0) builder = builder.limit(opts.limit);
    if (opts.revision) builder = builder.revision(opts.revision);
    let res;
    try {
      res = await builder.exec();
    } catch (err) {
      if (isCompactedError(err))
        throw new StoreError("Compacted", "the continue token's revision has been compacted");
      throw err;
    }
    const items = res.kvs.map((kv) => ({
      value: JSON.parse(kv.value.toString()) as T,
      modRevision: Number(kv.mod_revision),
    }));
    const revision = opts.revision ?? Number(res.header.revision);
    const last = res.kvs[res.kvs.length - 1];
    const page: ListPage<T> = { items, revision };
    if (res.more && last) page.continueKey = last.key.toString();
    return page;
  }

  /** Creates key; AlreadyExists if present. Returns the new mod revision. */
  async create<T>(key: string, value: T): Promise<number> {
    const res = await this.client
      .if(key, "Create", "==", 0)
      .then(this.client.put(key).value(JSON.stringify(value)))
      .commit();
    if (!res.succeeded) throw new StoreError("AlreadyExists", `${key} already exists`);
    return Number(res.header.revision);
  }

  /** Replaces key only if it is still at expectedModRevision. */
  async update<T>(key: string, value: T, expectedModRevision: number): Promise<number> {
    const res = await this.client
      .if(key, "Mod", "==", expectedModRevision)
      .then(this.client.put(key).value(JSON.stringify(value)))
      .else(this.client.get(key))
      .commit();
    if (!res.succeeded) {
      const found = res.responses[0]?.response_range?.kvs?.length ?? 0;
      if (found === 0) throw new StoreError("NotFound", `${key} not found`);
      throw new StoreError("Conflict", `${key} was modified (expected revision ${expectedModRevision})`);
    }
    return Number(res.header.revision);
  }

  /** Deletes key if still at expectedModRevision (when given); returns the delete revision. */
  async delete(key: string, expectedModRevision?: number): Promise<number> {
    const del = this.client.delete().key(key);
    const txn =
      expectedModRevision === undefined
        ? this.client.if(key, "Create", ">", 0)
        : this.client.if(key, "Mod", "==", expectedModRevision);
    const res = await txn.then(del).else(this.client.get(key)).commit();
    if (!res.succeeded) {
      const found = res.responses[0]?.response_range?.kvs?.length ?? 0;
      if (found === 0) throw new StoreError("NotFound", `${key} not found`);
      throw new StoreError("Conflict", `${key} was modified`);
    }
    return Number(res.header.revision);
  }

  private readonly compactionListeners = new Set<(revision: number) => void>();

  /** Drops history up to revision; watch caches hear of it so they answer 410 as etcd would. */
  async compact(revision: number): Promise<void> {
    try {
      await this.client.kv.compact({ revision: String(revision), physical: true });
    } catch (err) {
      // Another apiserver compacted further already: nothing left to do.
      if (!isCompactedError(err)) throw err;
    }
    for (const listener of this.compactionListeners) listener(revision);
  }

  onCompaction(listener: (revision: number) => void): () => void {
    this.compactionListeners.add(listener);
    return () => this.compactionListeners.delete(listener);
  }

  /**
   * Streams changes under prefix after revision `afterRevision` (exclusive). Calls onError with a
   * Compacted StoreError when that history is gone. Returns a function that stops the watch.
   */
  async watch<T>(
    prefix: string,
    afterRevision: number,
    onEvent: (ev: StoreEvent<T>) => void,
    onError: (err: Error) => void,
  ): Promise<() => Promise<void>> {
    if (afterRevision > 0) {
      try {
        await this.client.get("\0").revision(afterRevision).exec();
      } catch (err) {
        if (isCompactedError(err))
          throw new StoreError("Compacted", `revision ${afterRevision} has been compacted`);
        throw err;
      }
    }
    const watcher = await this.client
      .watch()
      .prefix(prefix)
      .startRevision(String(afterRevision + 1))
      .withPreviousKV()
      .create();
    watcher.on("put", (kv, prev) => {
      onEvent({
        type: "put",
        key: kv.key.toString(),
        value: JSON.parse(kv.value.toString()) as T,
        prev: prev ? (JSON.parse(prev.value.toString()) as T) : undefined,
        modRevision: Number(kv.mod_revision),
      });
    });
    watcher.on("delete", (kv, prev) => {
      onEvent({
        type: "delete",
        key: kv.key.toString(),
        prev: prev ? (JSON.parse(prev.value.toString()) as T) : undefined,
        modRevision: Number(kv.mod_revision),
      });
    });
    // etcd cancels a watch server-side only when its start revision is compacted (the reason text
    // is often empty), so a cancel is reported as Compacted.
    watcher.on("error", (err: Error) => {
      const compacted = isCompactedError(err) || /Watcher canceled/.test(err.message);
      onError(compacted ? new StoreError("Compacted", err.message) : err);
    });
    return async () => {
      watcher.removeAllListeners();
      watcher.on("error", () => undefined);
      // etcd3's cancel waits for etcd's answer on the watch stream (or for a watch id still being
      // assigned); on a slow or half-dead stream that can be forever, and shutdown must not wait.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        watcher.cancel().catch(() => undefined),
        new Promise<void>((r) => (timer = setTimeout(r, WATCH_CANCEL_WAIT_MS).unref())),
      ]);
      clearTimeout(timer);
    };
  }
}
