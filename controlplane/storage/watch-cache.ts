import type { EtcdStore, StoreEvent } from "./etcd-store.ts";

interface Subscriber<T> {
  prefix: string;
  after: number;
  onEvent: (ev: StoreEvent<T>) => void;
  onError: (err: Error) => void;
}

/**
 * One etcd watch per resource, parsed once and fanned out to every API watch, with a ring of
 * recent events so a client resuming from a recent resourceVersion is served from memory.
 * Older revisions fall through to a direct etcd watch, which answers Compacted (410) when gone.
 */
export class WatchCache<T> {
  private ring: StoreEvent<T>[] = [];
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

  private ensureStarted(): Promise<void> {
    this.starting ??= (async () => {
      const rev = await this.store.revision();
      this.coveredAfter = rev;
      this.ring = [];
      this.stopWatch = await this.store.watch<T>(
        this.prefix,
        rev,
        (ev) => this.ingest(ev),
        (err) => this.fail(err),
      );
    })().catch((err: unknown) => {
      this.starting = undefined;
      throw err;
    });
    return this.starting;
  }

  private ingest(ev: StoreEvent<T>): void {
    this.ring.push(ev);
    if (this.ring.length > this.capacity) this.coveredAfter = this.ring.shift()!.modRevision;
    for (const sub of this.subs) {
      if (ev.modRevision <= sub.after || !ev.key.startsWith(sub.prefix)) continue;
      try {
        sub.onEvent(ev);
      } catch {
        // A subscriber that cannot take this event (a malformed stored object) skips it; it must
        // not throw into the etcd stream's handler and take the process down.
      }
    }
  }

  /** The shared watch broke: end every subscriber (clients re-watch) and start afresh next time. */
  private fail(err: Error): void {
    const subs = [...this.subs];
    this.subs.clear();
    this.ring = [];
    this.starting = undefined;
    void this.stopWatch?.();
    this.stopWatch = undefined;
    for (const sub of subs) sub.onError(err);
  }

  /** Events under prefix after revision `after`; returns a function that unsubscribes. */
  async subscribe(
    prefix: string,
    after: number,
    onEvent: (ev: StoreEvent<T>) => void,
    onError: (err: Error) => void,
  ): Promise<() => Promise<void>> {
    await this.ensureStarted();
    if (after < this.coveredAfter) return this.store.watch<T>(prefix, after, onEvent, onError);
    const sub: Subscriber<T> = { prefix, after, onEvent, onError };
    for (const ev of this.ring) if (ev.modRevision > after && ev.key.startsWith(prefix)) onEvent(ev);
    this.subs.add(sub);
    return async () => {
      this.subs.delete(sub);
    };
  }

  get watchers(): number {
    return this.subs.size;
  }

  async close(): Promise<void> {
    this.unlisten();
    this.subs.clear();
    this.starting = undefined;
    // once: etcd3 would send a second cancel for the same watch id, which etcd never answers
    const stop = this.stopWatch;
    this.stopWatch = undefined;
    await stop?.();
  }
}
