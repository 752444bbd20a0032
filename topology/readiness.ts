/**
 * Named readiness checks: every wait in lab says what it waits for, what it saw last and where to
 * look when it gives up — never a bare "timeout". This is the one primitive every wait and poll loop
 * goes through (ssh-ready, etcd health, lab-server /readyz, vip.held, wait-ready...).
 *
 * The deadline holds even when the peer never answers: each attempt gets an AbortSignal bounded by
 * min(attempt timeout, time left), and an attempt that ignores it is abandoned when it fires, so a
 * probe that never settles still ends at the deadline.
 */
import { LabError } from "./errors.ts";
import { deadlineController as deadline, untilAborted } from "../lib/deadline.ts";

export { untilAborted };

export interface ProbeResult {
  ready: boolean;
  /** What the probe saw, e.g. "2/3 etcd members healthy (master-3: connection refused)". */
  detail?: string;
  /** Waiting will not change the verdict (a host key that does not match): give up now. */
  final?: boolean;
}

export interface ReadinessCheck {
  /** What is awaited, e.g. "SSH on master-1 (10.200.3.11:22)". */
  name: string;
  /** Where to look when it is stuck, e.g. a console log path or a journalctl command. */
  lookAt?: string;
  /** One attempt; must honour `signal` (it is abandoned when the signal fires anyway). */
  probe(signal: AbortSignal): Promise<ProbeResult>;
}

export interface GiveUp {
  /** The last verdict (the probe's detail, its error, or that it did not answer in time). */
  last: string | undefined;
  elapsedMs: number;
  /** True when the probe said waiting will not help (ProbeResult.final). */
  final: boolean;
  /** Bounded by GIVE_UP_MS: for a last diagnostic (a journal tail) before the error. */
  signal: AbortSignal;
}

export interface WaitOptions {
  /** The whole wait's deadline, from the first attempt. */
  timeoutMs: number;
  /** Pause between attempts. */
  intervalMs?: number;
  /** Bound of one attempt (default 30 s); the time left bounds it too. */
  attemptTimeoutMs?: number;
  signal?: AbortSignal;
  /** Called after each probe that was not ready (for progress). */
  onPending?(detail: string | undefined, elapsedMs: number): void;
  /**
   * Builds the error thrown at the deadline (a step's own code and advice); default NOT_READY
   * naming the check, its last verdict and where to look. Bounded by GIVE_UP_MS.
   */
  giveUp?(info: GiveUp): LabError | Promise<LabError>;
}

/** How long a giveUp diagnostic may take before the plain error is thrown. */
export const GIVE_UP_MS = 15_000;

/** The default error at the deadline: the check's name, how long, its last verdict, where to look. */
export function notReadyError(check: Pick<ReadinessCheck, "name" | "lookAt">, info: GiveUp): LabError {
  return new LabError({
    code: "NOT_READY",
    what: `${check.name} not ready after ${Math.round(info.elapsedMs / 1000)} s${info.last ? `; last seen: ${info.last}` : ""}`,
    fix: check.lookAt ? `look at ${check.lookAt}` : undefined,
    source: "host",
  });
}

/** An AbortController that fires after `ms` with a DeadlineError, or with `parent`. */
export function deadlineController(
  ms: number,
  what: () => string,
  parent?: AbortSignal,
): { signal: AbortSignal; clear(): void } {
  return deadline(ms, what, parent, (m) => new DeadlineError(m));
}

/** The reason an attempt's signal fired on its own deadline (as opposed to the caller's cancel). */
export class DeadlineError extends Error {
  override readonly name = "DeadlineError";
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener("abort", done, { once: true });
  });
}

const secs = (ms: number) => (ms >= 10_000 ? `${Math.round(ms / 1000)} s` : `${ms} ms`);

/**
 * Polls `check` until ready; returns the milliseconds waited. At the deadline throws
 * `opts.giveUp(...)` or NOT_READY naming the check, its last verdict and where to look; ABORTED
 * when `opts.signal` fires. Never outlives `timeoutMs` by more than the give-up diagnostic (≤ GIVE_UP_MS).
 */
export async function waitUntilReady(check: ReadinessCheck, opts: WaitOptions): Promise<number> {
  const started = Date.now();
  const deadline = started + opts.timeoutMs;
  const interval = opts.intervalMs ?? 1000;
  const attemptMax = opts.attemptTimeoutMs ?? 30_000;
  let last: string | undefined;
  let final = false;
  for (;;) {
    if (opts.signal?.aborted) throw aborted(check);
    const bound = Math.min(attemptMax, deadline - Date.now());
    if (bound <= 0) break;
    const attempt = deadlineController(bound, () => `no answer within ${secs(bound)}`, opts.signal);
    try {
      const r = await untilAborted(check.probe(attempt.signal), attempt.signal);
      if (r.ready) return Date.now() - started;
      last = r.detail;
      final = r.final === true;
    } catch (err) {
      if (opts.signal?.aborted) throw aborted(check);
      last = err instanceof LabError ? err.what : err instanceof Error ? err.message : String(err);
    } finally {
      attempt.clear();
    }
    const elapsed = Date.now() - started;
    opts.onPending?.(last, elapsed);
    if (final || Date.now() + interval >= deadline) break;
    await sleep(interval, opts.signal);
  }
  const info = { last, elapsedMs: Date.now() - started, final };
  const fallback = () => notReadyError(check, { ...info, signal: AbortSignal.abort() });
  if (!opts.giveUp) throw fallback();
  const bounded = deadlineController(GIVE_UP_MS, () => "diagnostic took too long", opts.signal);
  try {
    throw await untilAborted(
      Promise.resolve(opts.giveUp({ ...info, signal: bounded.signal })),
      bounded.signal,
    );
  } catch (err) {
    if (err instanceof LabError) throw err;
    throw fallback();
  } finally {
    bounded.clear();
  }
}

function aborted(check: ReadinessCheck): LabError {
  return new LabError({ code: "ABORTED", what: `stopped while waiting for ${check.name}`, source: "user" });
}
