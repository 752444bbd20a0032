import { describe, expect, it } from "vitest";
import { LabError } from "../../topology/errors.ts";
import { waitUntilReady } from "../../topology/readiness.ts";

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
});
