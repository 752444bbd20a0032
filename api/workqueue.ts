/**
 * A rate-limited work queue of object keys (`namespace/name`), as client-go's workqueue:
 * a key queued twice is processed once (dedup while queued); a key being processed is never handed
 * to a second worker (it is re-queued when `done` is called if it was added meanwhile); failures
 * re-queue with per-key exponential backoff until `forget`. A key waiting to be added later waits
 * once: a second `addAfter` keeps whichever time comes first (client-go's delaying queue), so a
 * loop that asks for a retry on every pass never piles up timers.
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
  /** Keys to be added later: one timer each, due at `at`. */
  private readonly timers = new Map<string, { timer: NodeJS.Timeout; at: number }>();
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
    const waiting = this.timers.get(key);
    if (waiting) {
      if (waiting.at <= at) return;
      clearTimeout(waiting.timer);
    }
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref?.();
    this.timers.set(key, { timer, at });
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
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const w of this.waiters) w(undefined);
    this.waiters = [];
  }
}

/** What a reconcile may ask for besides success: to be looked at again after a delay. */
export type ReconcileResult = void | { requeueAfterMs: number };

const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * A failed reconcile as one Error whose message is `key: message`, the original as `cause`: one
 * argument, so no callback can log the key and lose the error (or the other way round).
 */
export function reconcileError(key: string, err: unknown): Error {
  return new Error(`${key}: ${messageOf(err)}`, { cause: err });
}

/**
 * Runs `workers` loops taking keys from the queue and reconciling them: success forgets the key's
 * backoff, an error is reported to `onError` (see reconcileError) and re-queues the key
 * rate-limited. Resolves when the queue is shut down.
 */
export async function runWorkers(
  queue: WorkQueue,
  reconcile: (key: string) => Promise<ReconcileResult>,
  opts: { workers?: number; onError?: ((err: Error) => void) | undefined } = {},
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
        opts.onError?.(reconcileError(key, err));
        queue.addRateLimited(key);
      } finally {
        queue.done(key);
      }
    }
  };
  await Promise.all(Array.from({ length: opts.workers ?? 1 }, worker));
}
