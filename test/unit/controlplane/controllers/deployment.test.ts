import type { V1Deployment, V1ReplicaSet } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { Informer } from "../../../../api/informer.ts";
import { DeploymentController } from "../../../../controlplane/controllers/deployment.ts";
import { HASH_LABEL, podTemplateHash } from "../../../../controlplane/controllers/pod-template.ts";
import { MemoryStore, memoryWriter } from "../../../helpers/memory-store.ts";
import { until } from "../../../helpers/until.ts";

const template = (image: string) => ({
  metadata: { labels: { app: "web" } },
  spec: { containers: [{ name: "c", image }] },
});

function setup() {
  const deployments = new MemoryStore<V1Deployment>();
  const rss = new MemoryStore<V1ReplicaSet>();
  const writer = memoryWriter({ deployments, replicasets: rss });
  const dInf = new Informer(deployments.listWatcher());
  const rsInf = new Informer(rss.listWatcher());
  const ctl = new DeploymentController(dInf, rsInf, writer);
  return { deployments, rss, dInf, rsInf, ctl };
}

describe("DeploymentController", () => {
  it("a ReplicaSet that holds the new one's name with another template is a hash collision: collisionCount goes up, the new one gets another name", async () => {
    const { deployments, rss, dInf, rsInf, ctl } = setup();
    const t = template("v1");
    const hash = podTemplateHash(t);
    // Someone else's ReplicaSet (not matching the selector, so not adopted) under the name we would pick.
    rss.create({
      metadata: { name: `web-${hash}`, namespace: "default", uid: "other", labels: { app: "other" } },
      spec: {
        replicas: 0,
        selector: { matchLabels: { app: "other" } },
        template: { ...template("v0"), metadata: { labels: { app: "other" } } },
      },
    });
    deployments.create({
      metadata: { name: "web", namespace: "default", uid: "d-1", generation: 1 },
      spec: { replicas: 1, selector: { matchLabels: { app: "web" } }, template: t },
    });
    const ac = new AbortController();
    void dInf.run(ac.signal);
    void rsInf.run(ac.signal);
    await Promise.all([dInf.waitForSync(), rsInf.waitForSync()]);

    await ctl.reconcile("default/web");
    await until(
      'dInf.get("default/web")?.status?.collisionCount === 1',
      () => dInf.get("default/web")?.status?.collisionCount === 1,
      2000,
      { everyMs: 5 },
    );
    await ctl.reconcile("default/web");
    const bumped = podTemplateHash(t, 1);
    expect(bumped).not.toBe(hash);
    const created = rss.objects.get(`default/web-${bumped}`);
    expect(created?.metadata?.ownerReferences?.[0]?.uid).toBe("d-1");
    expect(created?.spec?.template?.metadata?.labels?.[HASH_LABEL]).toBe(bumped);
    // The other ReplicaSet is untouched, and the count stays (the name must not flip back).
    expect(rss.objects.get(`default/web-${hash}`)?.metadata?.uid).toBe("other");
    await until("!!rsInf.get(`default/web-${bumped}`)", () => !!rsInf.get(`default/web-${bumped}`), 2000, {
      everyMs: 5,
    });
    await ctl.reconcile("default/web");
    expect(deployments.objects.get("default/web")?.status?.collisionCount).toBe(1);
    expect(rss.objects.size).toBe(2);
    ac.abort();
  });
});
