/**
 * Control loops against a real etcd and a real lab-server: the controller manager and the scheduler
 * (two instances of each, leader-elected) drive Deployments over two fake Nodes. There is no agent:
 * the test plays the kubelet — it renews the nodes' Leases, reports bound pods Running and Ready,
 * and finishes graceful pod deletions — and stops doing so for a node to make it fail.
 */
import { setMaxListeners } from "node:events";
import type { V1Deployment, V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LabClient } from "../../api/client.ts";
import type { LoopsConfig } from "../../controlplane/controller-manager.ts";
import { runControllerManager, runScheduler } from "../../controlplane/controller-manager.ts";
import { clientLoops } from "../../controlplane/lab-client-loops.ts";
import { FakeKubelet } from "../helpers/fake-kubelet.ts";
import { kubectlFor } from "../helpers/kubectl.ts";
import { until } from "../helpers/until.ts";
import { startTestApiServer, type TestApiServer } from "../helpers/test-apiserver.ts";

const NODES = ["node-a", "node-b"];

let api: TestApiServer;
let client: LabClient;
let kubelet: FakeKubelet;
const stops: AbortController[] = [];
const loopsDone: Promise<void>[] = [];
const errors: string[] = [];

const kubectl = kubectlFor(() => api.kubeconfig, 90_000);

const ready = (p: V1Pod): boolean =>
  !!p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
const live = (pods: V1Pod[]): V1Pod[] => pods.filter((p) => !p.metadata?.deletionTimestamp);

async function webPods(): Promise<V1Pod[]> {
  return (await client.list("pods", { namespace: "default", labelSelector: "app=web" })).items;
}

function startLoops(identity: string): AbortController {
  const ac = new AbortController();
  setMaxListeners(0, ac.signal);
  const cfg: LoopsConfig = {
    ...clientLoops(client),
    identity,
    leaderElection: { leaseDurationSeconds: 4, renewDeadlineMs: 3000, retryPeriodMs: 500 },
    nodeLifecycle: { gracePeriodMs: 4000, podEvictionTimeoutMs: 2000, monitorPeriodMs: 500 },
    clusterCidr: "10.244.0.0/16",
    onEvent: (e) => {
      if (e.kind === "error") errors.push(`${identity} ${e.component}: ${e.detail}`);
    },
  };
  loopsDone.push(runControllerManager(cfg, ac.signal), runScheduler(cfg, ac.signal));
  stops.push(ac);
  return ac;
}

async function holder(name: string): Promise<string | undefined> {
  return (await client.get("leases", name, "kube-system").catch(() => undefined))?.spec?.holderIdentity;
}

const cm: Record<string, AbortController> = {};

beforeAll(async () => {
  api = await startTestApiServer();
  client = await LabClient.fromKubeconfig(api.kubeconfig);
  kubelet = new FakeKubelet(client, NODES);
  await kubelet.register();
  kubelet.start();
  cm["cm-1"] = startLoops("cm-1");
  cm["cm-2"] = startLoops("cm-2");
});

afterAll(async () => {
  // Conflicts are expected and retried; anything else the loops reported is shown here.
  if (errors.length) console.warn(`loop errors (${errors.length}):\n${errors.slice(0, 20).join("\n")}`);
  kubelet?.stop();
  for (const s of stops) s.abort();
  await Promise.allSettled(loopsDone);
  client?.close();
  await api?.stop();
});

describe("control loops on lab-server", () => {
  it("elects exactly one controller manager and one scheduler", async () => {
    const cmHolder = await until("a controller-manager leader", () => holder("kube-controller-manager"));
    const schedHolder = await until("a scheduler leader", () => holder("kube-scheduler"));
    expect(["cm-1", "cm-2"]).toContain(cmHolder);
    expect(["cm-1", "cm-2"]).toContain(schedHolder);
  });

  it("gives each node a pod CIDR", async () => {
    const cidrs = await until("pod CIDRs", async () => {
      const nodes = (await client.list("nodes")).items;
      const c = nodes.map((n) => n.spec?.podCIDR);
      return c.every(Boolean) ? c : undefined;
    });
    expect(new Set(cidrs).size).toBe(2);
    expect(cidrs.every((c) => /^10\.244\.\d+\.0\/24$/.test(c!))).toBe(true);
  });

  it("runs a Deployment of 3 spread over both nodes; kubectl rollout status succeeds", async () => {
    const d: V1Deployment = {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "web", namespace: "default" },
      spec: {
        replicas: 3,
        selector: { matchLabels: { app: "web" } },
        strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
        template: {
          metadata: { labels: { app: "web" } },
          spec: {
            containers: [
              { name: "web", image: "nginx:1", resources: { requests: { cpu: "100m", memory: "64Mi" } } },
            ],
          },
        },
      },
    };
    await client.create("deployments", d);
    await kubectl("rollout", "status", "deployment/web", "--timeout=60s");
    const pods = live(await webPods());
    expect(pods).toHaveLength(3);
    const perNode = NODES.map((n) => pods.filter((p) => p.spec?.nodeName === n).length).sort();
    expect(perNode).toEqual([1, 2]);
    const events = (await client.list("events", { namespace: "default" })).items;
    expect(events.some((e) => e.reason === "Scheduled")).toBe(true);
  });

  it("keeps the Service's EndpointSlices in step with its Endpoints; kubectl lists them with upstream's columns", async () => {
    await client.create("services", {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "web", namespace: "default" },
      spec: { selector: { app: "web" }, ports: [{ name: "http", port: 80, targetPort: 8080 }] },
    });
    const ips = async () =>
      live(await webPods())
        .filter(ready)
        .map((p) => p.status!.podIP!)
        .sort();
    const sliceIps = async () => {
      const slices = (
        await client.list("endpointslices", {
          namespace: "default",
          labelSelector: "kubernetes.io/service-name=web",
        })
      ).items;
      return slices
        .flatMap((s) => (s.endpoints ?? []).filter((e) => e.conditions?.ready).flatMap((e) => e.addresses))
        .sort();
    };
    await until("the slice lists the 3 ready pods", async () => (await sliceIps()).length === 3);
    expect(await sliceIps()).toEqual(await ips());
    const [slice] = (
      await client.list("endpointslices", {
        namespace: "default",
        labelSelector: "kubernetes.io/service-name=web",
      })
    ).items;
    expect(slice!.addressType).toBe("IPv4");
    expect(slice!.ports).toEqual([{ name: "http", port: 8080, protocol: "TCP" }]);
    expect(slice!.metadata!.labels!["endpointslice.kubernetes.io/managed-by"]).toBe(
      "endpointslice-controller.k8s.io",
    );
    expect(slice!.metadata!.ownerReferences![0]).toMatchObject({
      kind: "Service",
      name: "web",
      controller: true,
    });
    const table = await kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=web");
    expect(table.split("\n")[0]).toMatch(/^NAME\s+ADDRESSTYPE\s+PORTS\s+ENDPOINTS\s+AGE$/);
    expect(table).toMatch(/web-\w+\s+IPv4\s+8080\s+\d+\.\d+\.\d+\.\d+/);
    // A slice changed by hand is put back; the Service's deletion takes its slices with it.
    await client.update("endpointslices", { ...slice!, endpoints: [] });
    await until("the slice is repaired", async () => (await sliceIps()).length === 3);
    await client.delete("services", "web", "default");
    await until(
      "the slices go with the Service",
      async () =>
        (
          await client.list("endpointslices", {
            namespace: "default",
            labelSelector: "kubernetes.io/service-name=web",
          })
        ).items.length === 0,
    );
  });

  it("scales to 5 and back to 2", async () => {
    await kubectl("scale", "deployment/web", "--replicas=5");
    await until("5 ready pods", async () => live(await webPods()).filter(ready).length === 5);
    await kubectl("rollout", "status", "deployment/web", "--timeout=60s");
    await kubectl("scale", "deployment/web", "--replicas=2");
    await until("2 pods", async () => live(await webPods()).length === 2);
    await kubectl("rollout", "status", "deployment/web", "--timeout=60s");
  });

  it("rolls out a new image without dropping below 2 ready pods, and rolls back with kubectl rollout undo", async () => {
    // Ready pods of the Deployment, recounted on every pod watch event during the rollout and the undo.
    let minReady = Infinity;
    const seen = new Map((await webPods()).map((p) => [p.metadata!.name!, p]));
    const list = await client.list("pods", { namespace: "default", labelSelector: "app=web" });
    const stopWatch = new AbortController();
    const watcher = (async () => {
      for await (const ev of client.watch("pods", {
        namespace: "default",
        labelSelector: "app=web",
        resourceVersion: list.metadata.resourceVersion,
        signal: stopWatch.signal,
      })) {
        if (ev.type === "BOOKMARK") continue;
        if (ev.type === "DELETED") seen.delete(ev.object.metadata!.name!);
        else seen.set(ev.object.metadata!.name!, ev.object);
        minReady = Math.min(minReady, live([...seen.values()]).filter(ready).length);
      }
    })();
    await kubectl("set", "image", "deployment/web", "web=nginx:2");
    await kubectl("rollout", "status", "deployment/web", "--timeout=90s");
    let pods = live(await webPods());
    expect(pods.map((p) => p.spec?.containers[0]?.image)).toEqual(["nginx:2", "nginx:2"]);
    const history = await kubectl("rollout", "history", "deployment/web");
    expect(history).toMatch(/\b1\b[\s\S]*\b2\b/);
    await kubectl("rollout", "undo", "deployment/web");
    await kubectl("rollout", "status", "deployment/web", "--timeout=90s");
    await until("old pods gone", async () => live(await webPods()).length === 2);
    pods = live(await webPods());
    expect(pods.map((p) => p.spec?.containers[0]?.image)).toEqual(["nginx:1", "nginx:1"]);
    stopWatch.abort();
    await watcher;
    // maxUnavailable 0 with 2 replicas: never fewer than 2 ready, on any event.
    expect(minReady).toBe(2);
    const d = await client.get("deployments", "web", "default");
    expect(d.metadata?.annotations?.["deployment.kubernetes.io/revision"]).toBe("3");
  });

  it("a node whose lease stops goes Ready=Unknown with the unreachable taint; its pods come back on the other node", async () => {
    await kubectl("scale", "deployment/web", "--replicas=4");
    await until("4 ready pods", async () => live(await webPods()).filter(ready).length === 4);
    const victim = live(await webPods()).find((p) => p.spec?.nodeName)?.spec?.nodeName ?? NODES[0]!;
    const survivor = NODES.find((n) => n !== victim)!;
    kubelet.dead.add(victim);
    const t0 = Date.now();
    const node = await until(
      "node Unknown",
      async () => {
        const n = await client.get("nodes", victim);
        const c = n.status?.conditions?.find((x) => x.type === "Ready");
        return c?.status === "Unknown" &&
          n.spec?.taints?.some((t) => t.key === "node.kubernetes.io/unreachable")
          ? n
          : undefined;
      },
      20_000,
    );
    expect(node.spec?.taints?.find((t) => t.key === "node.kubernetes.io/unreachable")?.effect).toBe(
      "NoExecute",
    );
    // grace 4 s (+ monitor period) → Unknown
    expect(Date.now() - t0).toBeLessThan(10_000);
    await until(
      "4 ready pods on the survivor",
      async () => {
        const pods = live(await webPods());
        return pods.length === 4 && pods.every((p) => p.spec?.nodeName === survivor && ready(p));
      },
      30_000,
    );
    // grace 4 s + eviction after 2 s + rescheduling, with slack for a busy machine
    expect(Date.now() - t0).toBeLessThan(25_000);
    // The node comes back: Ready again, the taint goes, and its kubelet finishes the evictions.
    kubelet.dead.delete(victim);
    await until("node back", async () => {
      const n = await client.get("nodes", victim);
      return !n.spec?.taints?.some((t) => t.key === "node.kubernetes.io/unreachable");
    });
    await until("evicted pods gone", async () => (await webPods()).length === 4);
  });

  it("another controller manager takes over when the leader stops, and keeps reconciling", async () => {
    const leader = (await holder("kube-controller-manager"))!;
    const other = leader === "cm-1" ? "cm-2" : "cm-1";
    const t0 = Date.now();
    cm[leader]!.abort();
    await until("takeover", async () => (await holder("kube-controller-manager")) === other, 15_000);
    await until("scheduler takeover", async () => (await holder("kube-scheduler")) === other, 15_000);
    expect(Date.now() - t0).toBeLessThan(15_000);
    await kubectl("scale", "deployment/web", "--replicas=1");
    await until("1 pod", async () => live(await webPods()).length === 1);
    await kubectl("rollout", "status", "deployment/web", "--timeout=60s");
  });

  it("orphan deletion keeps the ReplicaSets and pods; a re-created Deployment adopts them", async () => {
    const d = await client.get("deployments", "web", "default");
    const podsBefore = live(await webPods()).map((p) => p.metadata?.uid);
    await kubectl("delete", "deployment/web", "--cascade=orphan");
    await until(
      "Deployment gone",
      async () => !(await client.get("deployments", "web", "default").catch(() => undefined)),
    );
    const rss = await until("ReplicaSets released", async () => {
      const items = (await client.list("replicasets", { namespace: "default" })).items;
      return items.length > 0 && items.every((rs) => !rs.metadata?.ownerReferences?.length)
        ? items
        : undefined;
    });
    expect(rss.length).toBeGreaterThan(0);
    await client.create("deployments", {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "web", namespace: "default" },
      spec: d.spec!,
    });
    const uid = (await client.get("deployments", "web", "default")).metadata?.uid;
    await until("ReplicaSets adopted", async () =>
      (await client.list("replicasets", { namespace: "default" })).items.every(
        (rs) => rs.metadata?.ownerReferences?.[0]?.uid === uid,
      ),
    );
    await kubectl("rollout", "status", "deployment/web", "--timeout=60s");
    expect(live(await webPods()).map((p) => p.metadata?.uid)).toEqual(podsBefore);
  });

  it("foreground deletion removes pods, then ReplicaSets, then the Deployment (garbage collection)", async () => {
    await kubectl("delete", "deployment/web", "--cascade=foreground", "--wait=false");
    // While dependents remain, the Deployment is still there with the foregroundDeletion finalizer.
    const d = await client.get("deployments", "web", "default").catch(() => undefined);
    if (d) expect(d.metadata?.finalizers).toContain("foregroundDeletion");
    await until(
      "Deployment gone",
      async () => !(await client.get("deployments", "web", "default").catch(() => undefined)),
    );
    expect((await client.list("replicasets", { namespace: "default" })).items).toHaveLength(0);
    expect(live(await webPods())).toHaveLength(0);
  });
});
