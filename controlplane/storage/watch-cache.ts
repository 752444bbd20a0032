import { StoreError, type EtcdStore, type StoreEvent, type Versioned } from "./etcd-store.ts";

interface Subscriber<T> {
  prefix: string;
  after: number;
  onEvent: (ev: StoreEvent<T>) => void;
  onError: (err: Error) => void;
  onProgress: ((revision: number) => void) | undefined;
}

/**
 * One etcd watch per resource, parsed once and fanned out to every API watch, with a ring of
 * recent events so a client resuming from a recent resourceVersion is served from memory.
 * Older revisions are refused as kube-apiserver's watch cache refuses them (410 too old).
 */
export class WatchCache<T> {
  private ring: StoreEvent<T>[] = [];
  /**
   * The newest version of every key an event has brought since the etcd watch started (deleted
   * keys leave). Never ahead of etcd, possibly behind: the update path starts from it and its
   * compare-and-swap on the mod revision tells when it was stale (see Registry.getForUpdate).
   */
  private readonly latest = new Map<string, Versioned<T>>();
  private readonly subs = new Set<Subscriber<T>>();
  /** Every event with a revision above this one is in the ring or still to come. */
  private coveredAfter = 0;
  private starting: Promise<void> | undefined;
  private stopWatch: (() => Promise<void>) | undefined;
  private readonly unlisten: () => void;

  constructor(
    private readonly store: EtcdStore,
    private readonly prefix: string,
    private readonly capacity = 1024,
  ) {
    this.unlisten = store.onCompaction((rev) => this.compacted(rev));
  }

  /** History up to rev is gone from etcd: forget it here too, so resuming there is a 410. */
  private compacted(rev: number): void {
    if (rev <= this.coveredAfter) return;
    this.coveredAfter = rev;
    this.ring = this.ring.filter((ev) => ev.modRevision > rev);
  }

  /**
   * Starts the one etcd watch of this resource at etcd's current revision, once. Lists call it
   * before they read (Registry.list), so a client's list-then-watch resumes inside the window.
   */
  start(): Promise<void> {
    this.starting ??= (async () => {
      const rev = await this.store.revision();
      this.coveredAfter = rev;
      this.ring = [];
      this.latest.clear();
      this.stopWatch = await this.store.watch<T>(
        this.prefix,
        rev,
        (ev) => this.ingest(ev),
        (err) => this.fail(err),
        (progress) => this.progress(progress),
      );
    })().catch((err: unknown) => {
      this.starting = undefined;
      throw err;
    });
    return this.starting;
  }

  private ingest(ev: StoreEvent<T>): void {
    if (ev.type === "put") this.latest.set(ev.key, { value: ev.value, modRevision: ev.modRevision });
    else this.latest.delete(ev.key);
    this.ring.push(ev);
    if (this.ring.length > this.capacity) this.coveredAfter = this.ring.shift()!.modRevision;
    for (const sub of this.subs) {
      if (ev.modRevision > sub.after && ev.key.startsWith(sub.prefix)) this.deliver(() => sub.onEvent(ev));
    }
  }

  /** etcd delivered every event up to revision: so did the cache, to every subscriber. */
  private progress(revision: number): void {
    for (const sub of this.subs) {
      const onProgress = sub.onProgress;
      if (onProgress && revision > sub.after) this.deliver(() => onProgress(revision));
    }
  }

  /**
   * A subscriber that cannot take this event (a malformed stored object) skips it; it must not
   * throw into the etcd stream's handler and take the process down, nor cost others their events.
   */
  private deliver(fn: () => void): void {
    try {
      fn();
    } catch {
      // skipped: see above
    }
  }

  /** The shared watch broke: end every subscriber (clients re-watch) and start afresh next time. */
  private fail(err: Error): void {
    const subs = [...this.subs];
    this.subs.clear();
    this.ring = [];
    this.latest.clear();
    this.starting = undefined;
    void this.stopWatch?.();
    this.stopWatch = undefined;
    for (const sub of subs) {
      try {
        sub.onError(err);
      } catch {
        // one subscriber's failure must not keep the others from hearing
      }
    }
  }

  /** Events under prefix after revision `after`; returns a function that unsubscribes. */
  async subscribe(
    prefix: string,
    after: number,
    onEvent: (ev: StoreEvent<T>) => void,
    onError: (err: Error) => void,
    onProgress?: (revision: number) => void,
  ): Promise<() => Promise<void>> {
    await this.start();
    // kube-apiserver's watch cache: a revision before its window is "too old" (410 Expired, with
    // the oldest revision it can resume from); the client lists again. History is never replayed.
    if (after < this.coveredAfter)
      throw new StoreError("Compacted", `too old resource version: ${after} (${this.coveredAfter})`);
    const sub: Subscriber<T> = { prefix, after, onEvent, onError, onProgress };
    for (const ev of this.ring) if (ev.modRevision > after && ev.key.startsWith(prefix)) onEvent(ev);
    this.subs.add(sub);
    return async () => {
      this.subs.delete(sub);
    };
  }

  /**
   * The newest version of `key` the watch has delivered, or undefined when it brought none (the
   * caller reads etcd). Shared with every subscriber: not to be changed.
   */
  recent(key: string): Versioned<T> | undefined {
    return this.stopWatch ? this.latest.get(key) : undefined;
  }

  get watchers(): number {
    return this.subs.size;
  }

  async close(): Promise<void> {
    this.unlisten();
    this.subs.clear();
    this.latest.clear();
    this.starting = undefined;
    // once; stopping never waits on etcd (etcd-watch.ts)
    const stop = this.stopWatch;
    this.stopWatch = undefined;
    await stop?.();
  }
}
