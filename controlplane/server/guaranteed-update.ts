/**
 * Read-modify-write with retry on conflict, as Kubernetes' GuaranteedUpdate: the one loop every
 * update, patch and binding goes through. Engineer "registry" adds Registry.guaranteedUpdate; when
 * it lands, this is the single place to point at it.
 */
export interface GuaranteedUpdateOptions<C = unknown> {
  /** Retry on a conflict at all (false when the client sent a resourceVersion precondition). */
  retry: boolean;
  /** Attempts in total, the first included. */
  attempts?: number;
  /** The error once every attempt hit a conflict; default: the last conflict. */
  exhausted?: () => Error;
  /**
   * Whether `read(false)` answered with the watch cache's copy (Registry.servedFromCache): any
   * failure of `write` on it may come from its being behind etcd and is tried once more on
   * `read(true)`, etcd's, without counting as an attempt.
   */
  cached?: (current: C) => boolean;
}

function isConflict(err: unknown): boolean {
  return (err as { reason?: unknown } | null)?.reason === "Conflict";
}

/**
 * `read` fetches the current object; failures there are final. `write` checks and tries the
 * change against it; a conflict there means someone wrote in between: read again and retry.
 * `read(false)` may answer from the watch cache (see opts.cached), `read(true)` reads etcd.
 */
export async function guaranteedUpdate<C, T>(
  read: (fresh: boolean) => Promise<C>,
  write: (current: C) => Promise<T>,
  opts: GuaranteedUpdateOptions<C>,
): Promise<T> {
  const attempts = opts.attempts ?? 6;
  let fresh = false;
  for (let attempt = 1; ; attempt++) {
    const current = await read(fresh);
    const cached = !fresh && (opts.cached?.(current) ?? false);
    fresh = true;
    try {
      return await write(current);
    } catch (err) {
      if (cached) {
        attempt--;
        continue;
      }
      if (!opts.retry || !isConflict(err)) throw err;
      if (attempt >= attempts) throw opts.exhausted?.() ?? err;
    }
  }
}
