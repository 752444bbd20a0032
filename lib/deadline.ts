/**
 * Deadlines as AbortSignals: one timer per bound, chained to a parent signal, and a way to stop
 * waiting on a promise that may never settle. Shared by the API client and lab's readiness waits.
 */

export function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason ?? "aborted"));
}

/**
 * An AbortSignal that fires after `ms` (never when `ms` is Infinity) with `makeError(what())`, or
 * with `parent`'s reason; clear() stops the timer. The timer is referenced: the wait keeps the
 * process alive.
 */
export function deadlineController(
  ms: number,
  what: () => string,
  parent?: AbortSignal,
  makeError: (message: string) => Error = (m) => new Error(m),
): { signal: AbortSignal; clear(): void } {
  const ac = new AbortController();
  const timer = Number.isFinite(ms)
    ? setTimeout(() => ac.abort(makeError(what())), Math.max(0, ms))
    : undefined;
  const onParent = () => ac.abort(parent!.reason);
  if (parent?.aborted) onParent();
  else parent?.addEventListener("abort", onParent, { once: true });
  return {
    signal: ac.signal,
    clear() {
      clearTimeout(timer);
      parent?.removeEventListener("abort", onParent);
    },
  };
}

/**
 * Settles with `p`, or rejects when `signal` fires first (`p` is then abandoned; its late result
 * or rejection is swallowed). The bound for calls that may never settle.
 */
export function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortReason(signal));
    if (signal.aborted) {
      p.catch(() => undefined);
      onAbort();
      return;
    }
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err as Error);
      },
    );
  });
}
