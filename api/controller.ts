/**
 * One control loop, as sample-controller's `Run`: queue the keys the informers already hold, run
 * `workers` reconcilers over the work queue until the signal aborts, and optionally re-queue every
 * key on a period (client-go's resync). Every loop of lab — controllers, scheduler, node agent —
 * runs through it.
 */
import type { ReconcileResult, WorkQueue } from "./workqueue.ts";
import { runWorkers } from "./workqueue.ts";
import { objectKey, type KubeObject } from "./informer.ts";

export interface ControllerOptions {
  queue: WorkQueue;
  /** Idempotent: reads desired and actual state and makes one step; throws to be retried with backoff. */
  reconcile: (key: string) => Promise<ReconcileResult>;
  /** Keys reconciled at once (never the same key twice at once). Default 1. */
  workers?: number;
  /** Queued before the workers start: what the informers listed before the handlers were attached. */
  initialKeys?: Iterable<string>;
  /** Every `everyMs`, queue each of `keys()` again. */
  resync?: { everyMs: number; keys: () => Iterable<string> };
  /** A failed reconcile, as one Error whose message is `key: message` (the key is retried). */
  onError?: ((err: Error) => void) | undefined;
}

const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Runs until `signal` aborts and the reconciles in flight have finished. */
export async function runController(signal: AbortSignal, o: ControllerOptions): Promise<void> {
  const { queue } = o;
  if (signal.aborted) {
    queue.shutDown();
    return;
  }
  signal.addEventListener("abort", () => queue.shutDown(), { once: true });
  for (const key of o.initialKeys ?? []) queue.add(key);
  const resync = o.resync;
  const timer = resync
    ? setInterval(() => {
        for (const key of resync.keys()) queue.add(key);
      }, resync.everyMs)
    : undefined;
  const reconcile = async (key: string): Promise<ReconcileResult> => {
    try {
      return await o.reconcile(key);
    } catch (err) {
      o.onError?.(new Error(`${key}: ${messageOf(err)}`, { cause: err }));
      throw err;
    }
  };
  try {
    await runWorkers(queue, reconcile, { workers: o.workers ?? 1 });
  } finally {
    clearInterval(timer);
  }
}

/**
 * The usual loop: `loop.reconcile` over `loop.queue`, starting from the keys of what one informer's
 * cache holds now.
 */
export function runOverCache(
  signal: AbortSignal,
  loop: { readonly queue: WorkQueue; reconcile(key: string): Promise<ReconcileResult> },
  cache: { values(): Iterable<KubeObject> },
  o: Pick<ControllerOptions, "workers" | "onError">,
): Promise<void> {
  return runController(signal, {
    queue: loop.queue,
    reconcile: (k) => loop.reconcile(k),
    initialKeys: [...cache.values()].map(objectKey),
    ...o,
  });
}
