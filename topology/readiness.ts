/**
 * Named readiness checks: every wait in lab says what it waits for, what it saw last and where to
 * look when it gives up — never a bare "timeout".
 */
import { setTimeout as sleep } from "node:timers/promises";
import { LabError } from "./errors.ts";

export interface ProbeResult {
  ready: boolean;
  /** What the probe saw, e.g. "2/3 etcd members healthy (master-3: connection refused)". */
  detail?: string;
}

export interface ReadinessCheck {
  /** What is awaited, e.g. "SSH on master-1 (10.200.3.11:22)". */
  name: string;
  /** Where to look when it is stuck, e.g. a console log path or a journalctl command. */
  lookAt?: string;
  probe(signal: AbortSignal): Promise<ProbeResult>;
}

export interface WaitOptions {
  timeoutMs: number;
  intervalMs?: number;
  signal?: AbortSignal;
  /** Called after each probe that was not ready (for progress). */
  onPending?(detail: string | undefined, elapsedMs: number): void;
}

/** Polls `check` until ready; throws NOT_READY naming the check, its last observation and where to look. */
export async function waitUntilReady(check: ReadinessCheck, opts: WaitOptions): Promise<number> {
  const started = Date.now();
  const interval = opts.intervalMs ?? 1000;
  let last: string | undefined;
  for (;;) {
    if (opts.signal?.aborted) {
      throw new LabError({
        code: "ABORTED",
        what: `stopped while waiting for ${check.name}`,
        source: "user",
      });
    }
    const attempt = AbortSignal.any([
      AbortSignal.timeout(Math.max(1000, opts.timeoutMs - (Date.now() - started))),
      ...(opts.signal ? [opts.signal] : []),
    ]);
    try {
      const r = await check.probe(attempt);
      if (r.ready) return Date.now() - started;
      last = r.detail;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    const elapsed = Date.now() - started;
    opts.onPending?.(last, elapsed);
    if (elapsed + interval > opts.timeoutMs) {
      throw new LabError({
        code: "NOT_READY",
        what: `${check.name} not ready after ${Math.round(elapsed / 1000)} s${last ? `; last seen: ${last}` : ""}`,
        fix: check.lookAt ? `look at ${check.lookAt}` : undefined,
        source: "host",
      });
    }
    await sleep(interval, undefined, { signal: opts.signal }).catch(() => undefined);
  }
}
