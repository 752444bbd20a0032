/**
 * A rate-limited work queue of object keys (`namespace/name`), as client-go's workqueue:
 * a key queued twice is processed once (dedup while queued); a key being processed is never handed
 * to a second worker (it is re-queued when `done` is called if it was added meanwhile); failures
 * re-queue with per-key exponential backoff until `forget`.
 */

export interface BackoffOptions {
  /** First retry delay in ms (default 5 ms, as client-go). */
  baseDelayMs?: number;
  /** Ceiling in ms (default 1000 s in client-go; 60 s here so a broken object is retried each minute). */
  maxDelayMs?: number;
}

/** Delay before the (failures+1)-th attempt: base · 2^failures, capped. Pure. */
export function backoffDelay(failures: number, opts: BackoffOptions = {}): number {
  const base = opts.baseDelayMs ?? 5;
  const max = opts.maxDelayMs ?? 60_000;
  if (failures > 40) return max;
  return Math.min(max, base * 2 ** failures);
}

export class WorkQueue {
  private readonly queue: string[] = [];
  /** Keys waiting to be processed (in `queue`, or to be re-queued when their processing ends). */
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly delayed = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private waiters: ((key: string | undefined) => void)[] = [];
  private shuttingDown = false;

  constructor(private readonly backoff: BackoffOptions = {}) {}

  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    const waiter = this.waiters.shift();
    if (waiter) {
      this.dirty.delete(key);
      this.processing.add(key);
      waiter(key);
    } else this.queue.push(key);
  }

  /** Adds the key after a delay; a key already waiting keeps the earlier time (client-go's delaying queue). */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) return this.add(key);
    const at = Date.now() + delayMs;
    const waiting = this.delayed.get(key);
    if (waiting && waiting.at <= at) return;
    if (waiting) {
      clearTimeout(waiting.timer);
      this.timers.delete(waiting.timer);
    }
    const t = setTimeout(() => {
      this.timers.delete(t);
      this.delayed.delete(key);
      this.add(key);
    }, delayMs);
    t.unref?.();
    this.timers.add(t);
    this.delayed.set(key, { at, timer: t });
  }

  /** Re-queue after the key's backoff and count one more failure. */
  addRateLimited(key: string): void {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    this.addAfter(key, backoffDelay(n, this.backoff));
  }

  /** The key succeeded: reset its backoff. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Next key to process, or undefined once shut down. Must be followed by `done(key)`. */
  get(): Promise<string | undefined> {
    const key = this.queue.shift();
    if (key !== undefined) {
      this.dirty.delete(key);
      this.processing.add(key);
      return Promise.resolve(key);
    }
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key)) {
      this.dirty.delete(key);
      this.add(key);
    }
  }

  get length(): number {
    return this.queue.length;
  }

  shutDown(): void {
    this.shuttingDown = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.delayed.clear();
    for (const w of this.waiters) w(undefined);
    this.waiters = [];
  }
}

/** What a reconcile may ask for besides success: to be looked at again after a delay. */
export type ReconcileResult = void | { requeueAfterMs: number };

/**
 * Runs `workers` loops taking keys from the queue and reconciling them: success forgets the key's
 * backoff, an error re-queues it rate-limited. Resolves when the queue is shut down.
 */
export async function runWorkers(
  queue: WorkQueue,
  reconcile: (key: string) => Promise<ReconcileResult>,
  opts: { workers?: number; onError?: (key: string, err: unknown) => void } = {},
): Promise<void> {
  const worker = async (): Promise<void> => {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      try {
        const res = await reconcile(key);
        queue.forget(key);
        if (res && res.requeueAfterMs >= 0) queue.addAfter(key, res.requeueAfterMs);
      } catch (err) {
        opts.onError?.(key, err);
        queue.addRateLimited(key);
      } finally {
        queue.done(key);
      }
    }
  };
  await Promise.all(Array.from({ length: opts.workers ?? 1 }, worker));
}
