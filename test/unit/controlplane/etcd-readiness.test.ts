import { describe, expect, it } from "vitest";
import { EtcdReadiness } from "../../../controlplane/etcd-readiness.ts";

/** A store whose next revision() answers, fails or hangs, as the test says. */
function fakeStore() {
  let mode: "ok" | "fail" | "hang" = "ok";
  let calls = 0;
  return {
    set: (m: typeof mode) => (mode = m),
    get calls() {
      return calls;
    },
    revision(): Promise<number> {
      calls++;
      if (mode === "ok") return Promise.resolve(42);
      if (mode === "fail") return Promise.reject(new Error("connect ECONNREFUSED 127.0.0.1:2379"));
      return new Promise<number>(() => undefined);
    },
  };
}

describe("etcd readiness for /readyz", () => {
  it("is not ready before etcd ever answered, and says so", async () => {
    const store = fakeStore();
    store.set("fail");
    const r = new EtcdReadiness(store, { timeoutMs: 50 });
    expect(r.notReady()).toBe("etcd has not answered yet");
    expect(await r.probe()).toBe("etcd has not answered yet: connect ECONNREFUSED 127.0.0.1:2379");
  });

  it("stays ready from memory between probes, and turns unready once the last answer is stale", async () => {
    let now = 1_000_000;
    const store = fakeStore();
    const r = new EtcdReadiness(store, { timeoutMs: 50, staleMs: 12_000, now: () => now });
    expect(await r.probe()).toBeUndefined();
    const calls = store.calls;
    now += 11_000;
    // answering costs no round trip
    expect(r.notReady()).toBeUndefined();
    expect(store.calls).toBe(calls);
    store.set("fail");
    await r.probe();
    expect(r.notReady()).toBeUndefined(); // one failed probe inside the window is not an outage
    now += 2_000;
    await r.probe();
    expect(r.notReady()).toBe("etcd has not answered for 13 s: connect ECONNREFUSED 127.0.0.1:2379");
    store.set("ok");
    expect(await r.probe()).toBeUndefined();
  });

  it("counts a hung etcd as failed after the probe timeout", async () => {
    let now = 0;
    const store = fakeStore();
    const r = new EtcdReadiness(store, { timeoutMs: 30, staleMs: 100, now: () => now });
    await r.probe();
    store.set("hang");
    now = 500;
    const t0 = Date.now();
    expect(await r.probe()).toBe("etcd has not answered for 1 s: etcd did not answer within 0.03 s");
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it("probes in a loop, one round trip at a time, until stopped", async () => {
    const store = fakeStore();
    const r = new EtcdReadiness(store, { intervalMs: 10 });
    await r.start();
    expect(r.notReady()).toBeUndefined();
    await new Promise((res) => setTimeout(res, 100));
    r.stop();
    const calls = store.calls;
    expect(calls).toBeGreaterThan(2);
    await new Promise((res) => setTimeout(res, 50));
    expect(store.calls).toBe(calls);
  });
});
