import type { V1Pod, V1ReplicaSet } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { Informer, objectKey } from "../../../../api/informer.ts";
import { Expectations } from "../../../../controlplane/controllers/expectations.ts";
import { ReplicaSetController } from "../../../../controlplane/controllers/replicaset.ts";
import type { ObjectWriter } from "../../../../controlplane/loop-client.ts";
import { MemoryStore, memoryWriter } from "../../../helpers/memory-store.ts";
import { until } from "../../../helpers/until.ts";

function setup(wrap: (w: ObjectWriter) => ObjectWriter = (w) => w) {
  const pods = new MemoryStore<V1Pod>();
  const rss = new MemoryStore<V1ReplicaSet>();
  const writer = memoryWriter({ pods, replicasets: rss });
  const podInf = new Informer(pods.listWatcher());
  const rsInf = new Informer(rss.listWatcher());
  const ctl = new ReplicaSetController(rsInf, podInf, wrap(writer));
  return { pods, rss, podInf, rsInf, ctl };
}

describe("ReplicaSetController", () => {
  it("does not create pods twice when reconciled again before its cache shows the first ones", async () => {
    const { pods, rss, podInf, rsInf, ctl } = setup();
    rss.create({
      metadata: { name: "web", namespace: "default", uid: "rs-1" },
      spec: {
        replicas: 3,
        selector: { matchLabels: { app: "web" } },
        template: { metadata: { labels: { app: "web" } }, spec: { containers: [] } },
      },
    });
    const ac = new AbortController();
    void podInf.run(ac.signal);
    void rsInf.run(ac.signal);
    await Promise.all([podInf.waitForSync(), rsInf.waitForSync()]);
    // Both runs start from the same (empty) pod cache.
    await Promise.all([ctl.reconcile("default/web"), ctl.reconcile("default/web")]);
    await until("podInf.cache.size === 3", () => podInf.cache.size === 3, 2000, { everyMs: 5 });
    await new Promise((r) => setTimeout(r, 30));
    expect(pods.objects.size).toBe(3);
    for (const p of pods.objects.values()) {
      expect(p.metadata?.name).toMatch(/^web-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
      expect(p.metadata?.ownerReferences?.[0]).toMatchObject({
        kind: "ReplicaSet",
        uid: "rs-1",
        controller: true,
      });
    }
    // Once the cache caught up, another run changes nothing but status.
    await ctl.reconcile("default/web");
    expect(pods.objects.size).toBe(3);
    await until(
      'rsInf.get("default/web")?.status?.replicas === 3',
      () => rsInf.get("default/web")?.status?.replicas === 3,
      2000,
      { everyMs: 5 },
    );
    // Scale down: exactly one pod goes, even when reconciled twice.
    const rs = rss.objects.get("default/web")!;
    rss.update({ ...rs, spec: { ...rs.spec!, replicas: 2 } });
    await until(
      'rsInf.get("default/web")?.spec?.replicas === 2',
      () => rsInf.get("default/web")?.spec?.replicas === 2,
      2000,
      { everyMs: 5 },
    );
    await Promise.all([ctl.reconcile("default/web"), ctl.reconcile("default/web")]);
    await until("podInf.cache.size === 2", () => podInf.cache.size === 2, 2000, { everyMs: 5 });
    expect([...pods.objects.keys()].filter((k) => k.startsWith("default/web-"))).toHaveLength(2);
    expect(objectKey(rsInf.get("default/web")!)).toBe("default/web");
    ac.abort();
  });
});

describe("ReplicaSetController slow start", () => {
  const rsObj = (replicas: number): V1ReplicaSet => ({
    metadata: { name: "web", namespace: "default", uid: "rs-1" },
    spec: {
      replicas,
      selector: { matchLabels: { app: "web" } },
      template: { metadata: { labels: { app: "web" } }, spec: { containers: [] } },
    },
  });

  it("creates in batches of 1, 2, 4, ... and stops at the first refused batch", async () => {
    // The 4th create is refused (a quota, say): the batches of 1, 2 and 4 went out, the rest of
    // the 10 not; what was not created is not expected.
    let podCreates = 0;
    const events: string[] = [];
    const { pods, rss, podInf, rsInf, ctl } = setup((w) => ({
      ...w,
      create: (async (r, ns, o) => {
        if (r === "events") events.push((o as { reason?: string }).reason ?? "");
        else if (++podCreates === 4) throw new Error("exceeded quota");
        return w.create(r, ns, o);
      }) as ObjectWriter["create"],
    }));
    rss.create(rsObj(10));
    const ac = new AbortController();
    void podInf.run(ac.signal);
    void rsInf.run(ac.signal);
    await Promise.all([podInf.waitForSync(), rsInf.waitForSync()]);
    await expect(ctl.reconcile("default/web")).rejects.toThrow(/exceeded quota/);
    expect(podCreates).toBe(7); // 1 + 2 + 4, the refusal in the third batch
    expect(pods.objects.size).toBe(6);
    expect(events).toEqual(["FailedCreate"]);
    // The 6 created are awaited, then the next run creates the remaining 4.
    await until("podInf.cache.size === 6", () => podInf.cache.size === 6, 2000, { everyMs: 5 });
    expect(ctl.expectations.satisfied("default/web")).toBe(true);
    await ctl.reconcile("default/web");
    expect(pods.objects.size).toBe(10);
    expect(events).toEqual(["FailedCreate", "SuccessfulCreate"]);
    ac.abort();
  });
});

describe("Expectations", () => {
  it("hold until every create and delete is observed, or they expire", () => {
    let now = 0;
    const e = new Expectations(1000, () => now);
    e.expect("rs", 2, ["ns/p1"]);
    expect(e.satisfied("rs")).toBe(false);
    e.creationObserved("rs");
    e.creationFailed("rs");
    expect(e.satisfied("rs")).toBe(false);
    e.deletionObserved("rs", "ns/p1");
    expect(e.satisfied("rs")).toBe(true);
    e.expect("rs", 5, []);
    now = 1001;
    expect(e.satisfied("rs")).toBe(true);
  });
});
