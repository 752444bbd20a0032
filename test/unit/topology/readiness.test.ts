import { describe, expect, it, vi } from "vitest";
import { LabError } from "../../../topology/errors.ts";
import { GIVE_UP_MS, waitUntilReady } from "../../../topology/readiness.ts";

describe("named readiness checks", () => {
  it("returns once the probe is ready", async () => {
    let n = 0;
    const ms = await waitUntilReady(
      { name: "thing", probe: async () => ({ ready: ++n >= 3, detail: `try ${n}` }) },
      { timeoutMs: 5000, intervalMs: 10 },
    );
    expect(n).toBe(3);
    expect(ms).toBeGreaterThanOrEqual(0);
  });

  it("gives up with what it waited for, what it saw last and where to look", async () => {
    const err = await waitUntilReady(
      {
        name: "SSH on master-1 (10.200.0.11:22)",
        lookAt: "/state/console/master-1.log",
        probe: async () => {
          throw new Error("connect ECONNREFUSED 10.200.0.11:22");
        },
      },
      { timeoutMs: 120, intervalMs: 30 },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LabError);
    const e = err as LabError;
    expect(e.code).toBe("NOT_READY");
    expect(e.message).toMatch(
      /^SSH on master-1 \(10\.200\.0\.11:22\) not ready after \d+ s; last seen: connect ECONNREFUSED 10\.200\.0\.11:22 \(fix: look at \/state\/console\/master-1\.log\)$/,
    );
  });

  it("stops when cancelled", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    const err = await waitUntilReady(
      { name: "never", probe: async () => ({ ready: false }) },
      { timeoutMs: 10_000, intervalMs: 20, signal: ac.signal },
    ).catch((e: unknown) => e);
    expect((err as LabError).code).toBe("ABORTED");
  });

  it("a probe that never settles still ends at the deadline, naming the check", async () => {
    const started = Date.now();
    let sawAbort = false;
    const err = await waitUntilReady(
      {
        name: "lab-server /readyz on master-1",
        probe: (signal) => {
          signal.addEventListener("abort", () => (sawAbort = true));
          return new Promise(() => undefined); // the peer never answers and the probe ignores it
        },
      },
      { timeoutMs: 300, intervalMs: 50, attemptTimeoutMs: 60_000 },
    ).catch((e: unknown) => e);
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(600);
    expect(sawAbort).toBe(true);
    expect((err as LabError).code).toBe("NOT_READY");
    expect((err as LabError).message).toMatch(
      /^lab-server \/readyz on master-1 not ready after 0 s; last seen: no answer within 300 ms$/,
    );
  });

  it("bounds each attempt by its own timeout and tries again", async () => {
    let n = 0;
    const signals: AbortSignal[] = [];
    const started = Date.now();
    await waitUntilReady(
      {
        name: "flaky",
        probe: (signal) => {
          signals.push(signal);
          return ++n === 1 ? new Promise(() => undefined) : Promise.resolve({ ready: true });
        },
      },
      { timeoutMs: 5_000, intervalMs: 10, attemptTimeoutMs: 100 },
    );
    expect(n).toBe(2);
    expect(signals[0]!.aborted).toBe(true);
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it("an attempt never outlives the time left", async () => {
    const started = Date.now();
    const err = await waitUntilReady(
      {
        name: "slow",
        probe: (signal) =>
          new Promise((_, reject) => signal.addEventListener("abort", () => reject(new Error("gave up")))),
      },
      { timeoutMs: 250, intervalMs: 10, attemptTimeoutMs: 10_000 },
    ).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(500);
    expect((err as LabError).message).toContain("slow not ready");
  });

  it("gives up at once on a final verdict, with the step's own error", async () => {
    let n = 0;
    const err = await waitUntilReady(
      { name: "ssh", probe: async () => ({ ready: false, detail: `wrong host key ${++n}`, final: true }) },
      {
        timeoutMs: 10_000,
        intervalMs: 10,
        giveUp: ({ last, final }) => new LabError({ code: "HOST_KEY", what: `${last} (final: ${final})` }),
      },
    ).catch((e: unknown) => e);
    expect(n).toBe(1);
    expect((err as LabError).code).toBe("HOST_KEY");
    expect((err as LabError).message).toBe("wrong host key 1 (final: true)");
  });

  it("a give-up diagnostic that hangs is cut off and the plain error thrown", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    try {
      const p = waitUntilReady(
        { name: "vip.held", probe: async () => ({ ready: false, detail: "none holds it" }) },
        { timeoutMs: 50, intervalMs: 10, giveUp: () => new Promise<LabError>(() => undefined) },
      ).catch((e: unknown) => e);
      await vi.advanceTimersByTimeAsync(GIVE_UP_MS + 100);
      const err = (await p) as LabError;
      expect(err.code).toBe("NOT_READY");
      expect(err.message).toContain("vip.held not ready");
      expect(err.message).toContain("last seen: none holds it");
    } finally {
      vi.useRealTimers();
    }
  });
});
