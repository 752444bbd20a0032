import type { V1Lease } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { LeaderElector, leaseDecision, type LeaderElectionConfig } from "../../../api/leader-election.ts";
import { memoryLeaseStore } from "../../helpers/memory-store.ts";
import { until } from "../../helpers/until.ts";

const base = { namespace: "kube-system", name: "ctl", leaseDurationSeconds: 15, nowMs: 1_000_000 };

describe("leaseDecision", () => {
  it("creates a missing lease held by the candidate", () => {
    const d = leaseDecision(undefined, { ...base, identity: "a", expired: false });
    expect(d.action).toBe("create");
    if (d.action === "create") {
      expect(d.lease.spec?.holderIdentity).toBe("a");
      expect(String(d.lease.spec?.renewTime)).toMatch(/^\d{4}-.*\.\d{6}Z$/);
    }
  });
  it("waits while another holder's lease is fresh, takes over when expired or released", () => {
    const lease = {
      metadata: { name: "ctl", resourceVersion: "3" },
      spec: { holderIdentity: "b", leaseTransitions: 2 },
    };
    expect(leaseDecision(lease, { ...base, identity: "a", expired: false })).toEqual({
      action: "wait",
      holder: "b",
    });
    const d = leaseDecision(lease, { ...base, identity: "a", expired: true });
    expect(d.action).toBe("update");
    if (d.action === "update") {
      expect(d.lease.spec?.holderIdentity).toBe("a");
      expect(d.lease.spec?.leaseTransitions).toBe(3);
      expect(d.lease.metadata?.resourceVersion).toBe("3"); // optimistic concurrency
    }
    const released = { ...lease, spec: { ...lease.spec, holderIdentity: "" } };
    expect(leaseDecision(released, { ...base, identity: "a", expired: false }).action).toBe("update");
  });
  it("renews its own lease without counting a transition", () => {
    const lease = {
      metadata: { name: "ctl" },
      spec: { holderIdentity: "a", leaseTransitions: 2, acquireTime: "t0" as unknown as Date },
    };
    const d = leaseDecision(lease, { ...base, identity: "a", expired: false });
    expect(d.action === "update" && d.lease.spec?.leaseTransitions).toBe(2);
    expect(d.action === "update" && String(d.lease.spec?.acquireTime)).toBe("t0");
  });
});

describe("LeaderElector", () => {
  const fast = { leaseDurationSeconds: 1, renewDeadlineMs: 600, retryPeriodMs: 100 };
  /** Candidate `identity` (default "a") for the Lease kube-system/ctl, with fast timings. */
  const candidate = (
    cfg: Omit<LeaderElectionConfig, "namespace" | "name" | "identity"> & { identity?: string },
  ): LeaderElector =>
    new LeaderElector({ ...fast, namespace: "kube-system", name: "ctl", identity: "a", ...cfg });
  /** Someone else (an operator, a split brain) writes the Lease as held by `holder`. */
  const leaseTakenBy = async (store: ReturnType<typeof memoryLeaseStore>, holder: string) => {
    const cur = await store.get("kube-system", "ctl");
    await store.update({ ...cur!, spec: { ...cur!.spec, holderIdentity: holder, renewTime: new Date() } });
  };
  /** Candidate "a" counting its terms and keeping its errors; `term(n, signal)` is term n's work. */
  const countingTerms = (term: (n: number, signal: AbortSignal) => Promise<void>) => {
    const store = memoryLeaseStore();
    const seen = { terms: 0, errors: [] as string[] };
    const e = candidate({
      store,
      onStartedLeading: (signal) => term(++seen.terms, signal),
      onError: (err) => void seen.errors.push(String(err)),
    });
    return { store, seen, e };
  };

  it("elects exactly one of two candidates; the other takes over when the leader releases", async () => {
    const store = memoryLeaseStore();
    const leading = new Set<string>();
    const stopped: string[] = [];
    const mk = (id: string): LeaderElector =>
      candidate({
        // A long lease, so a takeover well under it can only come from the release.
        leaseDurationSeconds: 3,
        renewDeadlineMs: 2000,
        store,
        identity: id,
        onStartedLeading: () => void leading.add(id),
        onStoppedLeading: () => {
          leading.delete(id);
          stopped.push(id);
        },
      });
    const a = mk("a");
    const b = mk("b");
    const acA = new AbortController();
    const acB = new AbortController();
    const runA = a.run(acA.signal);
    const runB = b.run(acB.signal);
    await until("leading.size === 1", () => leading.size === 1, 5000, { everyMs: 10 });
    await new Promise((r) => setTimeout(r, 400));
    expect(leading.size).toBe(1);
    const [first] = [...leading];
    const [firstAc, secondId] = first === "a" ? [acA, "b"] : [acB, "a"];
    const t0 = Date.now();
    firstAc.abort();
    await until("leading.has(secondId)", () => leading.has(secondId), 5000, { everyMs: 10 });
    // Released, so the takeover takes about one retry period, not a lease duration (3 s).
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(stopped).toEqual([first]);
    acA.abort();
    acB.abort();
    await Promise.all([runA, runB]);
  });

  it("takes over an abandoned (not released) lease after its duration", async () => {
    const store = memoryLeaseStore();
    await store.create({
      metadata: { namespace: "kube-system", name: "ctl" },
      spec: { holderIdentity: "dead", leaseDurationSeconds: 1, renewTime: new Date() },
    });
    let led = 0;
    const e = candidate({
      store,
      onStartedLeading: () => void (led = Date.now()),
    });
    const ac = new AbortController();
    const t0 = Date.now();
    const run = e.run(ac.signal);
    await until("led > 0", () => led > 0, 5000, { everyMs: 10 });
    expect(led - t0).toBeGreaterThanOrEqual(1000);
    expect(store.store.objects.get("kube-system/ctl")?.spec?.leaseTransitions).toBe(1);
    ac.abort();
    await run;
    expect(store.store.objects.get("kube-system/ctl")?.spec?.holderIdentity).toBe("");
  });

  it("stops leading when it cannot renew within the deadline", async () => {
    const store = memoryLeaseStore();
    let broken = false;
    const flaky = {
      get: (ns: string, n: string) => (broken ? Promise.reject(new Error("etcd down")) : store.get(ns, n)),
      create: store.create,
      // the leader renews without reading (fast path): etcd down fails its writes too
      update: (l: V1Lease) => (broken ? Promise.reject(new Error("etcd down")) : store.update(l)),
    };
    let signalSeen: AbortSignal | undefined;
    let stoppedAt = 0;
    const e = candidate({
      store: flaky,
      onStartedLeading: (s) => void (signalSeen = s),
      onStoppedLeading: () => void (stoppedAt = Date.now()),
    });
    const ac = new AbortController();
    const run = e.run(ac.signal);
    await until("e.isLeader()", () => e.isLeader(), 5000, { everyMs: 10 });
    const t0 = Date.now();
    broken = true;
    await until("stoppedAt > 0", () => stoppedAt > 0, 5000, { everyMs: 10 });
    expect(signalSeen?.aborted).toBe(true);
    expect(stoppedAt - t0).toBeGreaterThanOrEqual(400); // deadline counts from the last renew, ≤ one retry before t0
    expect(stoppedAt - t0).toBeLessThan(1500);
    ac.abort();
    await run;
  });

  it("renews with one write per retry period and no read; a lease taken meanwhile ends its term", async () => {
    const store = memoryLeaseStore();
    const calls = { get: 0, update: 0 };
    const counting = {
      get: (ns: string, n: string) => (calls.get++, store.get(ns, n)),
      create: store.create,
      update: (l: V1Lease) => (calls.update++, store.update(l)),
    };
    let stopped = false;
    const e = candidate({
      leaseDurationSeconds: 3,
      renewDeadlineMs: 2000,
      store: counting,
      onStartedLeading: () => undefined,
      onStoppedLeading: () => void (stopped = true),
    });
    const ac = new AbortController();
    const run = e.run(ac.signal);
    await until("e.isLeader()", () => e.isLeader(), 5000, { everyMs: 10 });
    const before = { ...calls };
    await until("calls.update >= before.update + 5", () => calls.update >= before.update + 5, 5000, {
      everyMs: 10,
    });
    expect(calls.get).toBe(before.get);
    // someone else wrote the Lease (an operator, a split brain): the stale renew fails, the
    // leader reads, sees another holder and stops leading
    await leaseTakenBy(store, "b");
    await until("stopped", () => stopped, 5000, { everyMs: 10 });
    expect(e.isLeader()).toBe(false);
    ac.abort();
    await run;
    expect(store.store.objects.get("kube-system/ctl")?.spec?.holderIdentity).toBe("b");
  });

  it("a term whose loops end on their own steps down and gives the lease up, then leads afresh", async () => {
    // the first term's loops stop at once (as the scheduler's did when etcd was out); later
    // terms run until their signal aborts
    const { store, seen, e } = countingTerms((n, signal) =>
      n === 1
        ? Promise.resolve()
        : new Promise<void>((r) => signal.addEventListener("abort", () => r(), { once: true })),
    );
    const ac = new AbortController();
    const run = e.run(ac.signal);
    await until("terms >= 2", () => seen.terms >= 2, 5000, { everyMs: 10 });
    expect(seen.errors.join("\n")).toMatch(/the loops ended while leading; stepping down/);
    expect(e.isLeader()).toBe(true);
    ac.abort();
    await run;
    expect(store.store.objects.get("kube-system/ctl")?.spec?.holderIdentity).toBeFalsy();
  });

  it("loops that never stop after a term ends do not keep the candidate from campaigning again", async () => {
    // a term's work that ignores its signal and never settles
    const { store, seen, e } = countingTerms(() => new Promise<void>(() => {}));
    const ac = new AbortController();
    const run = e.run(ac.signal);
    await until("e.isLeader()", () => e.isLeader(), 5000, { everyMs: 10 });
    // someone else takes the lease: the term ends, its work never stops
    await leaseTakenBy(store, "b");
    // within a lease duration (1 s) of the term's end the elector campaigns again and, once
    // b's lease expires, leads a second term
    await until("terms >= 2", () => seen.terms >= 2, 8000, { everyMs: 10 });
    expect(seen.errors.join("\n")).toMatch(/did not stop within 1 s of its end; campaigning again/);
    ac.abort();
    await run;
  });

  it("refuses a renew deadline not shorter than the lease", () => {
    const store = memoryLeaseStore();
    expect(
      () =>
        new LeaderElector({
          store,
          namespace: "n",
          name: "x",
          identity: "a",
          leaseDurationSeconds: 5,
          renewDeadlineMs: 5000,
          onStartedLeading: () => {},
        }),
    ).toThrow(/renew deadline/);
  });
});
