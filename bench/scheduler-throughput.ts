/**
 * SCHEDULER ALONE (compare bench/scale.ts, end to end over HTTPS, etcd and hollow nodes).
 * Scheduler throughput: pods bound per second for N pending pods on M nodes, through the real
 * scheduler loop (informers, queue, decisions, bindings) over an in-memory store, so it measures
 * the scheduler itself, not HTTP. Usage: npx tsx bench/scheduler-throughput.ts [pods] [nodes...]
 */
import type { V1Node, V1Pod } from "@kubernetes/client-node";
import type { KubeObject } from "../api/informer.ts";
import type { ListWatchFactory, ObjectWriter } from "../controlplane/loop-client.ts";
import { Scheduler } from "../controlplane/scheduler/scheduler.ts";
import { MemoryStore } from "../test/helpers/memory-store.ts";

async function measure(
  podCount: number,
  nodeCount: number,
): Promise<{ podsPerSecond: number; ms: number; heapMiB: number }> {
  const pods = new MemoryStore<V1Pod>();
  const nodes = new MemoryStore<V1Node>();
  for (let i = 0; i < nodeCount; i++)
    nodes.create({
      metadata: { name: `node-${i}`, labels: { zone: `z${i % 3}` } },
      status: {
        allocatable: { cpu: "32", memory: "128Gi", pods: "110" },
        conditions: [{ type: "Ready", status: "True" }],
      },
    });
  const lw = ((resource: string) =>
    (resource === "pods" ? pods : nodes).listWatcher()) as unknown as ListWatchFactory;
  let bound = 0;
  let done: () => void = () => {};
  const finished = new Promise<void>((r) => (done = r));
  const writer = {
    async bind(ns: string, name: string, node: string) {
      const p = pods.objects.get(`${ns}/${name}`)!;
      pods.update({ ...p, spec: { ...p.spec!, nodeName: node } });
      if (++bound === podCount) done();
    },
    async create<T extends KubeObject>(_r: string, _ns: string | undefined, o: T) {
      return o; // events
    },
  } as unknown as ObjectWriter;
  const sched = new Scheduler(lw, writer);
  const ac = new AbortController();
  const running = sched.run(ac.signal);
  await Promise.all([sched.pods.waitForSync(), sched.nodes.waitForSync()]);
  const t0 = performance.now();
  for (let i = 0; i < podCount; i++)
    pods.create({
      metadata: {
        name: `pod-${i}`,
        namespace: "default",
        ownerReferences: [
          { apiVersion: "apps/v1", kind: "ReplicaSet", name: "rs", uid: `rs-${i % 10}`, controller: true },
        ],
      },
      spec: {
        containers: [{ name: "c", image: "x", resources: { requests: { cpu: "100m", memory: "128Mi" } } }],
      },
    });
  await finished;
  const ms = performance.now() - t0;
  const heapMiB = process.memoryUsage().heapUsed / 2 ** 20;
  ac.abort();
  await running;
  return {
    podsPerSecond: Math.round((podCount / ms) * 1000),
    ms: Math.round(ms),
    heapMiB: Math.round(heapMiB),
  };
}

const podCount = Number(process.argv[2] ?? 1000);
const nodeCounts = process.argv.slice(3).map(Number);
for (const n of nodeCounts.length ? nodeCounts : [100, 1000]) {
  const r = await measure(podCount, n);
  console.log(JSON.stringify({ pods: podCount, nodes: n, ...r }));
}
