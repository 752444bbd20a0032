import { describe, expect, it } from "vitest";
import { runController } from "../../../api/controller.ts";
import { WorkQueue } from "../../../api/workqueue.ts";
import { until } from "../../helpers/until.ts";

describe("runController", () => {
  it("reconciles the initial keys and queued ones on several workers, one key never twice at once", async () => {
    const queue = new WorkQueue();
    const ac = new AbortController();
    const seen: string[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const busy = new Set<string>();
    let overlapped = false;
    const done = runController(ac.signal, {
      queue,
      workers: 3,
      initialKeys: ["a", "b", "c"],
      reconcile: async (key) => {
        if (busy.has(key)) overlapped = true;
        busy.add(key);
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await new Promise((r) => setTimeout(r, 20));
        seen.push(key);
        inFlight--;
        busy.delete(key);
      },
    });
    queue.add("d");
    queue.add("a"); // while a is in flight: once more, after it
    await until("five reconciles", () => seen.length >= 5);
    ac.abort();
    await done;
    expect(seen.sort()).toEqual(["a", "a", "b", "c", "d"]);
    expect(maxInFlight).toBe(3);
    expect(overlapped).toBe(false);
  });

  it("resolves once the signal aborts, after the reconcile in flight finished", async () => {
    const queue = new WorkQueue();
    const ac = new AbortController();
    let finished = false;
    const done = runController(ac.signal, {
      queue,
      initialKeys: ["slow"],
      reconcile: async () => {
        await new Promise((r) => setTimeout(r, 50));
        finished = true;
      },
    });
    await new Promise((r) => setTimeout(r, 10));
    ac.abort();
    await done;
    expect(finished).toBe(true);
    queue.add("late");
    expect(queue.length).toBe(0); // shut down: nothing is taken any more
    // an already aborted signal returns at once
    await runController(ac.signal, { queue: new WorkQueue(), reconcile: async () => {} });
  });

  it("requeues a key after requeueAfterMs, and every key on the resync period", async () => {
    const queue = new WorkQueue();
    const ac = new AbortController();
    const at: Record<string, number[]> = { again: [], tick: [] };
    const t0 = Date.now();
    const done = runController(ac.signal, {
      queue,
      initialKeys: ["again"],
      resync: { everyMs: 40, keys: () => ["tick"] },
      reconcile: async (key) => {
        at[key]!.push(Date.now() - t0);
        if (key === "again" && at[key]!.length < 2) return { requeueAfterMs: 60 };
      },
    });
    await until("requeued and resynced", () => at["again"]!.length >= 2 && at["tick"]!.length >= 2);
    ac.abort();
    await done;
    expect(at["again"]!.length).toBe(2);
    expect(at["again"]![1]! - at["again"]![0]!).toBeGreaterThanOrEqual(55);
    expect(at["tick"]![0]!).toBeGreaterThanOrEqual(35);
  });

  it("reports a failed reconcile as `key: message` and retries it with backoff", async () => {
    const queue = new WorkQueue({ baseDelayMs: 10 });
    const ac = new AbortController();
    const errors: Error[] = [];
    let calls = 0;
    const done = runController(ac.signal, {
      queue,
      initialKeys: ["ns/web"],
      onError: (err) => errors.push(err),
      reconcile: async () => {
        if (++calls < 3) throw new Error("connection refused");
      },
    });
    await until("third attempt", () => calls >= 3);
    ac.abort();
    await done;
    expect(errors.map((e) => e.message)).toEqual([
      "ns/web: connection refused",
      "ns/web: connection refused",
    ]);
    expect((errors[0]!.cause as Error).message).toBe("connection refused");
    expect(queue.numRequeues("ns/web")).toBe(0); // the success forgot the failures
  });
});
