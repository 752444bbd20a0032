import { describe, expect, it } from "vitest";
import { backoffDelay, runWorkers, WorkQueue } from "../../../api/workqueue.ts";

describe("backoffDelay", () => {
  it("doubles per failure from the base and stops at the ceiling", () => {
    const o = { baseDelayMs: 10, maxDelayMs: 1000 };
    expect([0, 1, 2, 3].map((n) => backoffDelay(n, o))).toEqual([10, 20, 40, 80]);
    expect(backoffDelay(7, o)).toBe(1000);
    expect(backoffDelay(500, o)).toBe(1000);
  });
});

describe("WorkQueue", () => {
  it("hands out a key queued several times only once", async () => {
    const q = new WorkQueue();
    q.add("ns/a");
    q.add("ns/b");
    q.add("ns/a");
    expect(q.length).toBe(2);
    expect(await q.get()).toBe("ns/a");
    expect(await q.get()).toBe("ns/b");
  });

  it("never gives a key to two workers at once, and re-queues it if it changed meanwhile", async () => {
    const q = new WorkQueue();
    q.add("k");
    const k = await q.get();
    q.add("k"); // changed while being processed
    expect(q.length).toBe(0);
    let second: string | undefined;
    void q.get().then((v) => (second = v));
    await Promise.resolve();
    expect(second).toBeUndefined();
    q.done(k!);
    await Promise.resolve();
    expect(second).toBe("k");
  });

  it("retries a failing key with growing delays and forgets the count after success", async () => {
    const q = new WorkQueue({ baseDelayMs: 5, maxDelayMs: 100 });
    const attempts: number[] = [];
    const start = Date.now();
    const run = runWorkers(q, async (key) => {
      attempts.push(Date.now() - start);
      if (attempts.length < 4) throw new Error("not yet");
      expect(key).toBe("ns/x");
      q.shutDown();
    });
    q.add("ns/x");
    await run;
    expect(attempts).toHaveLength(4);
    // 5 + 10 + 20 ms of backoff at least
    expect(attempts[3]!).toBeGreaterThanOrEqual(34);
    expect(q.numRequeues("ns/x")).toBe(0);
  });

  it("processes different keys concurrently with several workers", async () => {
    const q = new WorkQueue();
    let active = 0;
    let maxActive = 0;
    let done = 0;
    const run = runWorkers(
      q,
      async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        await new Promise((r) => setTimeout(r, 20));
        active--;
        if (++done === 3) q.shutDown();
      },
      { workers: 3 },
    );
    q.add("a");
    q.add("b");
    q.add("c");
    await run;
    expect(maxActive).toBe(3);
  });

  it("get() resolves undefined after shutdown", async () => {
    const q = new WorkQueue();
    const p = q.get();
    q.shutDown();
    expect(await p).toBeUndefined();
    q.add("late");
    expect(q.length).toBe(0);
  });

  it("keeps one pending timer per key: a later addAfter waits for the earlier one", async () => {
    const q = new WorkQueue();
    for (let i = 0; i < 100; i++) q.addAfter("k", 30 + i);
    q.addAfter("k", 10); // earlier wins
    await new Promise((r) => setTimeout(r, 20));
    expect(q.length).toBe(1);
    expect(await q.get()).toBe("k");
    q.done("k");
    await new Promise((r) => setTimeout(r, 150));
    expect(q.length).toBe(0); // the 100 later requests were one, and it was superseded
    q.shutDown();
  });

  it("a key added after a delay twice waits once, for the earlier time", async () => {
    const q = new WorkQueue();
    q.addAfter("k", 200);
    q.addAfter("k", 30); // earlier: replaces the 200 ms wait
    q.addAfter("k", 100); // later than the one waiting: nothing
    const t0 = Date.now();
    expect(await q.get()).toBe("k");
    expect(Date.now() - t0).toBeLessThan(150);
    q.done("k");
    await new Promise((r) => setTimeout(r, 250));
    expect(q.length).toBe(0); // neither the 100 nor the 200 ms wait fired later
    q.shutDown();
  });
});

describe("runWorkers errors", () => {
  it("hands onError one Error naming the key and the message, with the original as cause", async () => {
    const q = new WorkQueue({ baseDelayMs: 1000 });
    const seen: Error[] = [];
    const original = new Error('pods "web-1" is forbidden: no');
    const run = runWorkers(
      q,
      async () => {
        throw original;
      },
      {
        onError: (err) => {
          seen.push(err);
          q.shutDown();
        },
      },
    );
    q.add("default/web");
    await run;
    expect(seen.map((e) => e.message)).toEqual(['default/web: pods "web-1" is forbidden: no']);
    expect(seen[0]!.cause).toBe(original);
  });
});
