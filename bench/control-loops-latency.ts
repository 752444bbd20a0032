/**
 * Through a real etcd + lab-server: the controller manager and scheduler in-process, N fake nodes
 * (registered, never heartbeating needed within the run), one Deployment of R replicas.
 * Measures Deployment create → all pods created, → all pods bound, and bind rate over HTTPS.
 * Usage: npx tsx bench/control-loops-latency.ts [replicas=300] [nodes=20]
 */
import { setMaxListeners } from "node:events";
import { LabClient } from "../api/client.ts";
import { runControllerManager, runScheduler } from "../controlplane/controller-manager.ts";
import { clientLoops } from "../controlplane/lab-client-loops.ts";
import { FakeKubelet } from "../test/helpers/fake-kubelet.ts";
import { startTestApiServer } from "../test/helpers/test-apiserver.ts";

const replicas = Number(process.argv[2] ?? 300);
const nodeCount = Number(process.argv[3] ?? 20);
const api = await startTestApiServer();
const client = await LabClient.fromKubeconfig(api.kubeconfig);
const ac = new AbortController();
setMaxListeners(0, ac.signal);
try {
  const nodes = Array.from({ length: nodeCount }, (_v, i) => `node-${i}`);
  const kubelet = new FakeKubelet(client, nodes);
  await kubelet.register();
  for (const n of nodes) {
    const node = await client.get("nodes", n);
    await client.updateStatus("nodes", {
      ...node,
      status: { ...node.status, allocatable: { cpu: "64", memory: "256Gi", pods: "500" } },
    });
  }
  const cfg = {
    ...clientLoops(client),
    identity: "bench",
    leaderElection: { leaseDurationSeconds: 15, renewDeadlineMs: 10_000, retryPeriodMs: 200 },
  };
  const loops = [runControllerManager(cfg, ac.signal), runScheduler(cfg, ac.signal)];
  while (!(await client.get("leases", "kube-scheduler", "kube-system").catch(() => undefined))) {
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 500));
  const rss0 = process.memoryUsage().rss;
  const t0 = performance.now();
  await client.create("deployments", {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "bench", namespace: "default" },
    spec: {
      replicas,
      selector: { matchLabels: { app: "bench" } },
      template: {
        metadata: { labels: { app: "bench" } },
        spec: {
          containers: [{ name: "c", image: "x", resources: { requests: { cpu: "10m", memory: "16Mi" } } }],
        },
      },
    },
  });
  let created = 0;
  let firstBound = 0;
  for (;;) {
    const pods = (await client.list("pods", { namespace: "default", labelSelector: "app=bench" })).items;
    const bound = pods.filter((p) => p.spec?.nodeName).length;
    if (!created && pods.length >= replicas) created = performance.now() - t0;
    if (!firstBound && bound > 0) firstBound = performance.now() - t0;
    if (bound >= replicas) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const allBound = performance.now() - t0;
  console.log(
    JSON.stringify({
      replicas,
      nodes: nodeCount,
      allCreatedMs: Math.round(created),
      allBoundMs: Math.round(allBound),
      bindsPerSecond: Math.round((replicas / (allBound - firstBound)) * 1000),
      rssGrowthMiB: Math.round((process.memoryUsage().rss - rss0) / 2 ** 20),
    }),
  );
  ac.abort();
  await Promise.allSettled(loops);
} finally {
  client.close();
  await api.stop();
}
