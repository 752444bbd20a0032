import * as grpc from "@grpc/grpc-js";
import { Etcd3, Range } from "etcd3";
import type { IOptions } from "etcd3";
import { EtcdWatchClient, EtcdWatchCompactedError, prefixEnd, type EtcdKeyValue } from "./etcd-watch.ts";

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

/** Options of the store beyond etcd3's. */
export interface EtcdStoreExtras {
  /** Where the watch client reports stream breaks and ignored answers (default: stderr). */
  log?: (line: string) => void;
  /** Reconnect delays of the watch stream. */
  watchBackoff?: { initialMs: number; maxMs: number };
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

/**
 * Failures of one request rather than of the member that answered it: gRPC's own
 * `RESOURCE_EXHAUSTED: received message larger than max` (a body over etcd's --max-request-bytes
 * plus gRPC's 512 KiB overhead, 2 MiB by default). etcd3 counts RESOURCE_EXHAUSTED as a member
 * fault: it retried the body on every member and its circuit breaker then failed every request of
 * every client for 5 s. As INVALID_ARGUMENT (what etcd itself answers to a body between 1.5 and
 * 2 MiB, "etcdserver: request is too large") it fails that caller only.
 */
const perRequestErrors: grpc.Interceptor = (options, nextCall) =>
  new grpc.InterceptingCall(
    nextCall(options),
    new grpc.RequesterBuilder()
      .withStart((metadata, listener, next) => {
        next(
          metadata,
          new grpc.ListenerBuilder()
            .withOnReceiveStatus((status, nextStatus) => {
              if (status.code === grpc.status.RESOURCE_EXHAUSTED && /larger than max/i.test(status.details)) {
                nextStatus({
                  ...status,
                  code: grpc.status.INVALID_ARGUMENT,
                  details: `etcdserver: request is too large (${status.details})`,
                });
              } else nextStatus(status);
            })
            .build(),
        );
      })
      .build(),
  );

function toValue<T>(kv: EtcdKeyValue | undefined): T | undefined {
  return kv && kv.value.length > 0 ? (JSON.parse(kv.value.toString()) as T) : undefined;
}

/**
 * JSON objects in etcd. Every write is one transaction comparing the key's mod revision, so a
 * writer holding a stale revision gets a Conflict instead of overwriting someone else's change.
 */
export class EtcdStore {
  /** Unary KV calls (etcd3: deadline, retry on another member, circuit breaker per member). */
  readonly client: Etcd3;
  /** Every watch, over lab's own client (etcd-watch.ts). */
  readonly watcher: EtcdWatchClient;
  private readonly log: (line: string) => void;

  constructor(options: IOptions, extras: EtcdStoreExtras = {}) {
    const hosts = typeof options.hosts === "string" ? options.hosts.split(",") : options.hosts;
    this.log = extras.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.watcher = new EtcdWatchClient({
      hosts,
      ...(options.credentials ? { credentials: options.credentials } : {}),
      log: this.log,
      ...(extras.watchBackoff ? { backoff: extras.watchBackoff } : {}),
    });
    this.client = new Etcd3({
      // A member that vanished without closing its connections (a powered-off master) held every
      // call sent to it until TCP gave up, minutes later: with 3 members, a third of lab-server's
      // requests hung and a new controller leader took 105 s. A deadline on every unary call moves
      // it to another member; keepalive pings close a silent connection within 15 s (etcd accepts
      // pings every 5 s or slower, and only on connections with calls: the default here too).
      defaultCallOptions: (c) =>
        c.isStream ? {} : { deadline: Date.now() + ETCD_CALL_TIMEOUT_MS, interceptors: [perRequestErrors] },
      ...options,
      grpcOptions: {
        "grpc.keepalive_time_ms": 10_000,
        "grpc.keepalive_timeout_ms": 5_000,
        ...options.grpcOptions,
      },
    });
  }

  async close(): Promise<void> {
    this.watcher.close();
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
   * Compacted StoreError when that history is gone (also later: a watch resuming after a broken
   * stream finds its revision compacted). onProgress hears the revision every event up to which
   * has been delivered (etcd's progress notifications). Returns a function that stops the watch;
   * it never waits on etcd.
   */
  async watch<T>(
    prefix: string,
    afterRevision: number,
    onEvent: (ev: StoreEvent<T>) => void,
    onError: (err: Error) => void,
    onProgress?: (revision: number) => void,
  ): Promise<() => Promise<void>> {
    if (afterRevision > 0) {
      // A watch from a compacted revision answers 410 at once rather than after its stream opened.
      try {
        await this.client.get("\0").revision(afterRevision).exec();
      } catch (err) {
        if (isCompactedError(err))
          throw new StoreError("Compacted", `revision ${afterRevision} has been compacted`);
        throw err;
      }
    }
    const cancel = this.watcher.watch(
      { key: prefix, rangeEnd: prefixEnd(prefix), startRevision: afterRevision + 1, prevKv: true },
      {
        onEvents: (events) => {
          for (const e of events) {
            const key = e.kv.key.toString();
            let ev: StoreEvent<T>;
            try {
              const prev = toValue<T>(e.prevKv);
              ev =
                e.type === "put"
                  ? {
                      type: "put",
                      key,
                      value: JSON.parse(e.kv.value.toString()) as T,
                      prev,
                      modRevision: e.kv.modRevision,
                    }
                  : { type: "delete", key, prev, modRevision: e.kv.modRevision };
            } catch (err) {
              this.log(
                `etcd watch: ${key} at revision ${e.kv.modRevision} is not JSON, skipped: ${(err as Error).message}`,
              );
              continue;
            }
            onEvent(ev);
          }
        },
        ...(onProgress ? { onProgress } : {}),
        // etcd cancels a watch itself only when its history is gone (or it may not be served at
        // all): either way the client must list again, which is what 410 tells it.
        onError: (err) =>
          onError(
            err instanceof EtcdWatchCompactedError
              ? new StoreError("Compacted", err.message)
              : new StoreError("Compacted", `${err.message}; list again`),
          ),
      },
    );
    return async () => cancel();
  }
}
