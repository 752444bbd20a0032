/**
 * The agent's per-UID pod reconcile, driven by a real informer (over an in-memory store) and a real
 * containerd: pod events alone start and tear down pods, one pod's trouble does not hold back
 * another, nothing is touched before the informer synced, and an idle node makes no CRI calls.
 */
import type { V1Pod, V1PodStatus } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Informer } from "../../api/informer.ts";
import { SAMPLE_IMAGE } from "../../images/oci/build.ts";
import { PodAgent } from "../../node/agent.ts";
import { POD_UID } from "../../node/labels.ts";
import { MemoryStore } from "../helpers/memory-store.ts";
import { until } from "../helpers/until.ts";
import type { TestNode } from "./agent-node.ts";
import { startTestNode } from "./agent-node.ts";

const pod = (name: string, uid: string, image = SAMPLE_IMAGE): V1Pod => ({
  metadata: { name, namespace: "default", uid },
  spec: {
    nodeName: "node-1",
    terminationGracePeriodSeconds: 1,
    containers: [{ name: "app", image, imagePullPolicy: "Never" }],
  },
});

describe("per-UID pod reconcile from informer events", () => {
  let node: TestNode;
  const statuses = new Map<string, V1PodStatus>();
  const terminated = new Set<string>();
  let listCalls = 0;

  beforeAll(async () => {
    node = await startTestNode();
  });
  afterAll(async () => {
    await node?.destroy();
  });

  const newAgent = (pods: Informer<V1Pod>, resyncMs: number): PodAgent =>
    new PodAgent({
      // counts the relists (every CRI listing of sandboxes)
      cri: new Proxy(node.cri, {
        get(target, prop, receiver) {
          if (prop === "listPodSandbox") listCalls++;
          return Reflect.get(target, prop, receiver) as unknown;
        },
      }),
      sink: {
        async podStatus(p, status) {
          statuses.set(p.metadata!.name!, status);
        },
        async podTerminated(p) {
          terminated.add(p.metadata!.name!);
        },
      },
      pods,
      nodeName: "node-1",
      cgroupRoot: node.cgroupRoot,
      logRoot: node.logRoot,
      volumeRoot: `${node.dir}/volumes`,
      resyncMs,
    });

  it("runs a created pod and tears down a deleted one on the events alone, one pod not holding back another", async () => {
    const store = new MemoryStore<V1Pod>();
    const informer = new Informer<V1Pod>(store.listWatcher());
    // a relist period far beyond the test: only informer events drive the reconciles
    const agent = newAgent(informer, 600_000);
    const ac = new AbortController();
    const informing = informer.run(ac.signal);
    try {
      await agent.start();
      await informer.waitForSync();
      store.create(pod("stuck", "uid-stuck", "docker.io/lab/missing:1"));
      store.create(pod("web", "uid-web"));
      const st = await until(
        "web running",
        () => statuses.get("web")?.phase === "Running" && statuses.get("web"),
      );
      expect(st.containerStatuses?.[0]?.state?.running).toBeDefined();
      const stuck = await until("stuck waiting", () => statuses.get("stuck"));
      expect(stuck.containerStatuses?.[0]?.state?.waiting?.reason).toBe("ErrImageNeverPull");

      const live = store.objects.get("default/web")!;
      store.update({ ...live, metadata: { ...live.metadata, deletionTimestamp: new Date() } });
      await until("web terminated", () => terminated.has("web"));
      expect(await node.cri.listPodSandbox({ [POD_UID]: "uid-web" })).toEqual([]);
      // the stuck pod goes on its delete event (no relist will come)
      store.remove("default/stuck");
      await until(
        "stuck torn down",
        async () => (await node.cri.listPodSandbox({ [POD_UID]: "uid-stuck" })).length === 0,
      );
    } finally {
      ac.abort();
      await informing;
      await agent.stop();
    }
  });

  it("touches nothing before the informer synced, and makes no CRI calls while the node has no pods", async () => {
    const store = new MemoryStore<V1Pod>();
    const informer = new Informer<V1Pod>(store.listWatcher());
    const agent = newAgent(informer, 100);
    const ac = new AbortController();
    let informing: Promise<void> | undefined;
    try {
      listCalls = 0;
      await agent.start();
      await new Promise((r) => setTimeout(r, 500));
      expect(listCalls).toBe(0); // not synced: nothing listed, nothing touched

      informing = informer.run(ac.signal);
      await informer.waitForSync();
      await until("first relist", () => listCalls > 0);
      await new Promise((r) => setTimeout(r, 300));
      const idle = listCalls;
      await new Promise((r) => setTimeout(r, 1000)); // ten relist periods
      expect(listCalls).toBe(idle);

      store.create(pod("late", "uid-late"));
      await until("late running", () => statuses.get("late")?.phase === "Running");
      const busy = listCalls;
      await new Promise((r) => setTimeout(r, 1000));
      expect(listCalls).toBeGreaterThan(busy + 3); // relisting again while a pod runs
      store.remove("default/late");
      await until(
        "late torn down",
        async () => (await node.cri.listPodSandbox({ [POD_UID]: "uid-late" })).length === 0,
      );
    } finally {
      ac.abort();
      await informing;
      await agent.stop();
    }
  });
});
