/**
 * Read-modify-write with retry on conflict, as Kubernetes' GuaranteedUpdate: the one loop every
 * update, patch and binding goes through. Engineer "registry" adds Registry.guaranteedUpdate; when
 * it lands, this is the single place to point at it.
 */
export interface GuaranteedUpdateOptions {
  /** Retry on a conflict at all (false when the client sent a resourceVersion precondition). */
  retry: boolean;
  /** Attempts in total, the first included. */
  attempts?: number;
  /** The error once every attempt hit a conflict; default: the last conflict. */
  exhausted?: () => Error;
}

function isConflict(err: unknown): boolean {
  return (err as { reason?: unknown } | null)?.reason === "Conflict";
}

/**
 * `read` fetches (and checks) the current object; failures there are final. `write` tries the
 * change against it; a conflict there means someone wrote in between: read again and retry.
 */
export async function guaranteedUpdate<C, T>(
  read: () => Promise<C>,
  write: (current: C) => Promise<T>,
  opts: GuaranteedUpdateOptions,
): Promise<T> {
  const attempts = opts.attempts ?? 6;
  for (let attempt = 1; ; attempt++) {
    const current = await read();
    try {
      return await write(current);
    } catch (err) {
      if (!opts.retry || !isConflict(err)) throw err;
      if (attempt >= attempts) throw opts.exhausted?.() ?? err;
    }
  }
}
