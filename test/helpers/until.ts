/**
 * The one wait of the tests: polls `fn` until it returns something truthy. A thrown error counts
 * as "not yet"; at the deadline the error names what was awaited, the last error, and whatever
 * `context` adds (an agent's log, say).
 */
export async function until<T>(
  what: string,
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 30_000,
  o: { everyMs?: number; context?: () => string } = {},
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) {
      const why = last ? `: ${last instanceof Error ? last.message : String(last)}` : "";
      throw new Error(`timed out waiting for ${what}${why}${o.context ? `\n${o.context()}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, o.everyMs ?? 200));
  }
}
