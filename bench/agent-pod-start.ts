/**
 * Pod start latency on the host (image present): time from handing the agent a pod to the first
 * status with phase Running, over 30 pods created at once, plus the agent process's RSS.
 * Run: npx tsx bench/agent-pod-start.ts   (root; starts its own containerd in a netns)
 */
import type { V1Pod, V1PodStatus } from "@kubernetes/client-node";
import { SAMPLE_IMAGE } from "../images/oci/build.ts";
import { PodAgent } from "../node/agent.ts";
import { StaticPods } from "../test/helpers/pod-source.ts";
import { startTestNode } from "../test/integration/agent-node.ts";

const COUNT = Number(process.env["PODS"] ?? 30);
/** 0: all pods at once (measures queueing too); >0: one pod every STAGGER_MS (per-pod latency). */
const STAGGER_MS = Number(process.env["STAGGER_MS"] ?? 0);

const node = await startTestNode();
try {
  const created = new Map<string, number>();
  const running = new Map<string, number>();
  const source = new StaticPods();
  const agent = new PodAgent({
    cri: node.cri,
    pods: source,
    nodeName: "bench",
    cgroupRoot: node.cgroupRoot,
    logRoot: node.logRoot,
    sink: {
      async podStatus(pod: V1Pod, status: V1PodStatus) {
        const name = pod.metadata!.name!;
        if (status.phase === "Running" && !running.has(name)) running.set(name, Date.now());
      },
      async podTerminated() {},
    },
  });
  await agent.start();
  const pods: V1Pod[] = Array.from({ length: COUNT }, (_, i) => ({
    metadata: { name: `bench-${i}`, namespace: "default", uid: `bench-uid-${i}` },
    spec: { containers: [{ name: "web", image: SAMPLE_IMAGE }], terminationGracePeriodSeconds: 1 },
  }));
  const t0 = Date.now();
  if (STAGGER_MS > 0) {
    for (let i = 1; i <= COUNT; i++) {
      created.set(pods[i - 1]!.metadata!.name!, Date.now());
      source.set(pods.slice(0, i));
      await new Promise((r) => setTimeout(r, STAGGER_MS));
    }
  } else {
    for (const p of pods) created.set(p.metadata!.name!, t0);
    source.set(pods);
  }
  while (running.size < COUNT && Date.now() - t0 < 120_000) await new Promise((r) => setTimeout(r, 20));
  const lat = [...running].map(([n, t]) => t - created.get(n)!).sort((a, b) => a - b);
  const pct = (p: number): number => lat[Math.min(lat.length - 1, Math.ceil((p / 100) * lat.length) - 1)]!;
  const rss = process.memoryUsage().rss / 2 ** 20;
  console.log(
    JSON.stringify({
      pods: COUNT,
      staggerMs: STAGGER_MS,
      running: lat.length,
      p50Ms: pct(50),
      p99Ms: pct(99),
      maxMs: lat.at(-1),
      rssMiB: Math.round(rss),
    }),
  );
  source.set([]);
  while ((await node.cri.listPodSandbox()).length > 0) await new Promise((r) => setTimeout(r, 200));
  await agent.stop();
} finally {
  await node.destroy();
}
