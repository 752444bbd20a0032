import type { CoreV1Event, V1Node, V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import type { KubeObject } from "../../../../api/informer.ts";
import type { ListWatchFactory, ObjectWriter } from "../../../../controlplane/loop-client.ts";
import { Scheduler } from "../../../../controlplane/scheduler/scheduler.ts";
import { MemoryStore } from "../../../helpers/memory-store.ts";

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}

const node = (name: string, cpu: string): V1Node => ({
  metadata: { name },
  status: {
    allocatable: { cpu, memory: "4Gi", pods: "10" },
    conditions: [{ type: "Ready", status: "True" }],
  },
});

/** Pods and nodes in memory, the scheduler's list-watches of them, and its status writes recorded. */
function memoryCluster() {
  const pods = new MemoryStore<V1Pod>();
  const nodes = new MemoryStore<V1Node>();
  const lw = ((r: string) => (r === "pods" ? pods : nodes).listWatcher()) as unknown as ListWatchFactory;
  const statusWrites: V1Pod[] = [];
  async function updateStatus<T extends KubeObject>(_r: string, _ns: string, o: T): Promise<T> {
    statusWrites.push(o as unknown as V1Pod);
    return pods.update(o as unknown as V1Pod) as unknown as T;
  }
  /** A binding as the API makes it: the pod's nodeName set. */
  async function bind(ns: string, name: string, n: string): Promise<void> {
    const p = pods.objects.get(`${ns}/${name}`)!;
    pods.update({ ...p, spec: { ...p.spec!, nodeName: n } });
  }
  /** The scheduler's writes: bindings, events (dropped unless `overrides` keeps them) and status. */
  const writer = (overrides: Partial<Record<keyof ObjectWriter, unknown>> = {}): ObjectWriter =>
    ({
      bind,
      create: async <T>(_r: string, _ns: string, o: T) => o,
      updateStatus,
      ...overrides,
    }) as unknown as ObjectWriter;
  return { pods, nodes, lw, statusWrites, bind, writer };
}

/** Runs `s` until the returned stop(), which waits for its loops to end. */
function start(s: Scheduler): () => Promise<void> {
  const ac = new AbortController();
  const run = s.run(ac.signal);
  return () => {
    ac.abort();
    return run;
  };
}

const podRequesting = (name: string, cpu: string): V1Pod => ({
  metadata: { name, namespace: "default" },
  spec: { containers: [{ name: "c", image: "x", resources: { requests: { cpu } } }] },
});

describe("Scheduler loop", () => {
  it("reports FailedScheduling once per reason, and binds the pod as soon as a node that fits appears", async () => {
    const { pods, nodes, lw, statusWrites, writer } = memoryCluster();
    const events: CoreV1Event[] = [];
    nodes.create(node("small", "500m"));
    const recordingEvents = writer({
      async create<T extends KubeObject>(_r: string, _ns: string, o: T) {
        events.push(o as unknown as CoreV1Event);
        return o;
      },
    });
    const s = new Scheduler(lw, recordingEvents, { unschedulableRetryMs: 20 });
    const stop = start(s);
    pods.create(podRequesting("big", "1"));
    await until(() => events.length === 1);
    await new Promise((r) => setTimeout(r, 100)); // several retries happen meanwhile
    expect(events.map((e) => [e.reason, e.message])).toEqual([
      ["FailedScheduling", "0/1 nodes are available: 1 Insufficient cpu."],
    ]);
    // The condition is written once, not on every retry.
    expect(statusWrites).toHaveLength(1);
    expect(pods.objects.get("default/big")?.status?.conditions).toEqual([
      expect.objectContaining({
        type: "PodScheduled",
        status: "False",
        reason: "Unschedulable",
        message: "0/1 nodes are available: 1 Insufficient cpu.",
      }),
    ]);
    nodes.create(node("large", "4"));
    await until(() => pods.objects.get("default/big")?.spec?.nodeName === "large");
    await until(() => events.length === 2);
    expect(events[1]).toMatchObject({
      reason: "Scheduled",
      type: "Normal",
      message: "Successfully assigned default/big to large",
      involvedObject: { kind: "Pod", name: "big", namespace: "default" },
    });
    await stop();
  });

  it("does not overcommit a node when many pods arrive at once", async () => {
    const { pods, nodes, lw, bind, writer } = memoryCluster();
    nodes.create(node("a", "1"));
    nodes.create(node("b", "1"));
    const slowBinds = writer({
      async bind(ns: string, name: string, n: string) {
        await new Promise((r) => setTimeout(r, 5)); // binds in flight overlap
        await bind(ns, name, n);
      },
    });
    const s = new Scheduler(lw, slowBinds, { workers: 4, unschedulableRetryMs: 60_000 });
    const stop = start(s);
    await Promise.all([s.pods.waitForSync(), s.nodes.waitForSync()]);
    for (let i = 0; i < 6; i++) pods.create(podRequesting(`p${i}`, "400m"));
    await until(() => s.bound === 4);
    await new Promise((r) => setTimeout(r, 50));
    const per = (n: string) => [...pods.objects.values()].filter((p) => p.spec?.nodeName === n).length;
    expect([per("a"), per("b")]).toEqual([2, 2]); // 2 × 400m fit in 1 CPU, a third does not
    await stop();
  });

  it("rewrites PodScheduled=False only when the message changes, keeping its transition time", async () => {
    const { pods, nodes, lw, statusWrites, writer } = memoryCluster();
    nodes.create(node("a", "500m"));
    const s = new Scheduler(lw, writer(), { unschedulableRetryMs: 10 });
    const stop = start(s);
    pods.create(podRequesting("big", "1"));
    await until(() => statusWrites.length === 1);
    await new Promise((r) => setTimeout(r, 100)); // ~10 retries
    expect(statusWrites).toHaveLength(1);
    const first = pods.objects.get("default/big")!.status!.conditions![0]!;
    const n = nodes.objects.get("a")!;
    nodes.update({ ...n, spec: { unschedulable: true } });
    await until(() => statusWrites.length === 2);
    const second = pods.objects.get("default/big")!.status!.conditions![0]!;
    expect(second.message).toBe("0/1 nodes are available: 1 Insufficient cpu, 1 node(s) were unschedulable.");
    expect(second.lastTransitionTime).toEqual(first.lastTransitionTime);
    await stop();
  });
});
