/**
 * Disruption budgets, eviction, drain, resource metrics and the HPA (issue 19) on a real etcd +
 * lab-server, three hollow nodes (`lab-agent --hollow`, one process each), the controllers and
 * scheduler, and kubectl 1.32: `kubectl top` figures, eviction answering 429 while a budget is
 * spent and 201 when it allows, `kubectl drain` blocked by a budget and then done within it, and
 * an HPA scaling a Deployment from 1 to 3 under high (steered) CPU and back to 1 after a short
 * scale-down stabilisation window.
 */
import type { V1Deployment, V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiStatusError, LabClient } from "../../api/client.ts";
import { HOLLOW_CPU_ANNOTATION } from "../../api/metrics.ts";
import type { LoopsConfig } from "../../controlplane/controller-manager.ts";
import { runControllers, runScheduler } from "../../controlplane/controller-manager.ts";
import { clientPodMetrics, clientScales } from "../../controlplane/controllers/scale-client.ts";
import { clientLoops } from "../../controlplane/lab-client-loops.ts";
import { loopEventLine } from "../../controlplane/loops-main.ts";
import {
  kubectlResult,
  Loops,
  nodeReady,
  startHollowAgent,
  stopProcess,
  type KubectlResult,
  type LoggedProcess,
} from "../helpers/hollow-cluster.ts";
import { startTestApiServer, type TestApiServer } from "../helpers/test-apiserver.ts";
import { until as untilTrue } from "../helpers/until.ts";

const NODES = ["node-1", "node-2", "node-3"];
const NS = "default";

let api: TestApiServer;
let client: LabClient;
const agents: LoggedProcess[] = [];
const loops = new Loops();
const logLines: string[] = [];

const kubectl = (...args: string[]): Promise<KubectlResult> =>
  kubectlResult(api.kubeconfig, args, { timeoutMs: 90_000 });
const until = <T>(what: string, f: () => Promise<T | undefined | false>, ms = 60_000): Promise<T> =>
  untilTrue(what, f, ms, { everyMs: 300, context: () => logLines.slice(-10).join("\n") });

const podReady = (p: V1Pod): boolean =>
  !p.metadata?.deletionTimestamp &&
  !!p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");

function loopsConfig(identity: string): LoopsConfig {
  return {
    ...clientLoops(client),
    identity,
    scales: clientScales(client),
    podMetrics: clientPodMetrics(client),
    hpaSyncPeriodMs: 1000,
    nodeLifecycle: { gracePeriodMs: 60_000, podEvictionTimeoutMs: 60_000, monitorPeriodMs: 1000 },
    onEvent: (e) => logLines.push(loopEventLine(e, identity)),
  };
}

async function deployment(
  name: string,
  replicas: number,
  annotations: Record<string, string> = {},
): Promise<void> {
  const d: V1Deployment = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace: NS },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name }, annotations },
        spec: {
          containers: [{ name: "c", image: "lab/sample:latest", resources: { requests: { cpu: "100m" } } }],
        },
      },
    },
  };
  await client.create("deployments", d);
}

const podsOf = async (app: string): Promise<V1Pod[]> =>
  (await client.list("pods", { namespace: NS, labelSelector: `app=${app}` })).items;

async function readyPods(app: string, n: number): Promise<V1Pod[]> {
  return until(`${n} ready pods of ${app}`, async () => {
    const ready = (await podsOf(app)).filter(podReady);
    return ready.length === n && ready;
  });
}

async function budget(name: string, app: string, minAvailable: number): Promise<void> {
  await client.create("poddisruptionbudgets", {
    apiVersion: "policy/v1",
    kind: "PodDisruptionBudget",
    metadata: { name, namespace: NS },
    spec: { minAvailable, selector: { matchLabels: { app } } },
  });
}

async function allowed(name: string, n: number): Promise<void> {
  await until(`${name} allowing ${n} disruptions`, async () => {
    const b = await client.get("poddisruptionbudgets", name, NS);
    return (
      b.status?.disruptionsAllowed === n &&
      (b.status?.observedGeneration ?? 0) >= (b.metadata?.generation ?? 1)
    );
  });
}

function evict(pod: string): Promise<unknown> {
  return client.request("POST", `/api/v1/namespaces/${NS}/pods/${pod}/eviction`, {
    apiVersion: "policy/v1",
    kind: "Eviction",
    metadata: { name: pod, namespace: NS },
  });
}

beforeAll(async () => {
  api = await startTestApiServer();
  client = await LabClient.fromKubeconfig(api.kubeconfig);
  for (const n of NODES) startHollowAgent(agents, api.kubeconfig, n);
  await until(
    "3 Ready hollow nodes",
    async () => (await client.list("nodes")).items.filter(nodeReady).length === NODES.length,
    90_000,
  );
  loops.start((s) => runScheduler(loopsConfig("sched"), s));
  loops.start((s) => runControllers(loopsConfig("cm"), s));
}, 120_000);

afterAll(async () => {
  await loops.stop();
  for (const { proc } of agents) await stopProcess(proc);
  client?.close();
  await api?.stop();
});

describe("resource metrics, budgets, eviction and autoscaling on hollow nodes", () => {
  it("kubectl top nodes and top pods print non-zero CPU and memory", async () => {
    await deployment("topped", 2);
    await readyPods("topped", 2);
    const nodes = await kubectl("top", "nodes", "--no-headers");
    expect(nodes.stderr).toBe("");
    const rows = nodes.stdout
      .trim()
      .split("\n")
      .map((l) => l.trim().split(/\s+/));
    expect(rows.map((r) => r[0]).sort()).toEqual(NODES);
    for (const r of rows) {
      expect(r[1]).toMatch(/^[1-9]\d*m$/);
      expect(r[3]).toMatch(/^[1-9]\d*Mi$/);
    }
    const pods = await kubectl("top", "pods", "-l", "app=topped", "--no-headers");
    const prow = pods.stdout
      .trim()
      .split("\n")
      .map((l) => l.trim().split(/\s+/));
    expect(prow).toHaveLength(2);
    for (const r of prow) {
      expect(r[1]).toMatch(/^[1-9]\d*m$/);
      expect(r[2]).toMatch(/^[1-9]\d*Mi$/);
    }
  }, 90_000);

  it("eviction answers 429 while the budget is spent and deletes the pod when it allows one", async () => {
    await deployment("guarded", 3);
    const pods = await readyPods("guarded", 3);
    await budget("guarded", "guarded", 3);
    await allowed("guarded", 0);
    const refused = await evict(pods[0]!.metadata!.name!).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(ApiStatusError);
    expect((refused as ApiStatusError).code).toBe(429);
    expect((refused as ApiStatusError).message).toBe(
      "Cannot evict pod as it would violate the pod's disruption budget.",
    );
    expect(JSON.stringify((refused as ApiStatusError).status)).toContain(
      "The disruption budget guarded needs 3 healthy pods and has 3 currently",
    );
    // the pod is still there
    expect(
      (await client.get("pods", pods[0]!.metadata!.name!, NS)).metadata?.deletionTimestamp,
    ).toBeUndefined();
    const t = await kubectl("get", "pdb", "guarded", "--no-headers");
    expect(t.stdout.trim().split(/\s+/).slice(0, 4)).toEqual(["guarded", "3", "N/A", "0"]);

    await client.patch("poddisruptionbudgets", "guarded", { spec: { minAvailable: 2 } }, { namespace: NS });
    await allowed("guarded", 1);
    await evict(pods[0]!.metadata!.name!);
    await until("the evicted pod gone", async () => {
      try {
        await client.get("pods", pods[0]!.metadata!.name!, NS);
        return false;
      } catch (err) {
        return err instanceof ApiStatusError && err.code === 404;
      }
    });
    // the one disruption is spent until the replacement is ready: a second eviction right away is refused
    const second = await evict(pods[1]!.metadata!.name!).then(
      () => 201,
      (e: unknown) => (e as ApiStatusError).code,
    );
    if (second === 201) {
      // only possible once the replacement was ready and counted: a Ready pod that is neither of
      // the two evicted (the budget's status itself has moved on past this eviction by now)
      const evicted = new Set([pods[0]!.metadata!.name!, pods[1]!.metadata!.name!]);
      const replacements = (await podsOf("guarded")).filter((p) => !evicted.has(p.metadata!.name!));
      expect(replacements.filter(podReady).length).toBeGreaterThanOrEqual(2);
      expect(replacements.some((p) => !pods.some((q) => q.metadata!.name === p.metadata!.name))).toBe(true);
    } else expect(second).toBe(429);
    await readyPods("guarded", 3);
  }, 120_000);

  it("an HPA scales a Deployment 1 → 3 under high CPU and back to 1 after its stabilisation window", async () => {
    await deployment("busy", 1, { [HOLLOW_CPU_ANNOTATION]: "200m" });
    await readyPods("busy", 1);
    await client.create("horizontalpodautoscalers", {
      apiVersion: "autoscaling/v2",
      kind: "HorizontalPodAutoscaler",
      metadata: { name: "busy", namespace: NS },
      spec: {
        scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "busy" },
        minReplicas: 1,
        maxReplicas: 3,
        metrics: [
          {
            type: "Resource",
            resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 50 } },
          },
        ],
        behavior: { scaleDown: { stabilizationWindowSeconds: 5 } },
      },
    });
    await until(
      "busy scaled to 3",
      async () => (await client.get("deployments", "busy", NS)).spec?.replicas === 3,
      60_000,
    );
    const pods = await readyPods("busy", 3);
    const row = await until("hpa row with 3 replicas", async () => {
      const r = await kubectl("get", "hpa", "busy", "--no-headers");
      const cells = r.stdout.trim().split(/\s+/);
      return cells[6] === "3" && cells;
    });
    // NAME REFERENCE TARGETS(cpu: N%/50%) MINPODS MAXPODS REPLICAS AGE
    expect(row.slice(0, 2)).toEqual(["busy", "Deployment/busy"]);
    expect(row.slice(2, 4).join(" ")).toMatch(/^cpu: \d+%\/50%$/);
    expect(row.slice(4, 7)).toEqual(["1", "3", "3"]);
    const events = (await client.list("events", { namespace: NS, fieldSelector: "involvedObject.name=busy" }))
      .items;
    expect(
      events.map((e) => `${e.involvedObject.kind} ${e.reason} ${e.message}`),
      JSON.stringify(events.map((e) => [e.involvedObject, e.reason, e.message])),
    ).toContain(
      "HorizontalPodAutoscaler SuccessfulRescale New size: 3; reason: cpu resource utilization (percentage of request) above target",
    );
    const described = await kubectl("describe", "hpa", "busy");
    expect(described.stdout).toMatch(/ScalingLimited\s+True\s+TooManyReplicas/);
    // the load stops
    const idle = await kubectl(
      "annotate",
      "pods",
      ...pods.map((p) => p.metadata!.name!),
      `${HOLLOW_CPU_ANNOTATION}=1m`,
      "--overwrite",
    );
    expect(idle.stderr).toBe("");
    const stoppedAt = Date.now();
    await until(
      "busy back to 1",
      async () => (await client.get("deployments", "busy", NS)).spec?.replicas === 1,
      60_000,
    );
    // not before the 5 s window over the recommendations of 3 has passed
    expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(4_000);
    const h = await client.get("horizontalpodautoscalers", "busy", NS);
    expect(h.status?.desiredReplicas).toBe(1);
    expect(h.status?.conditions?.find((c) => c.type === "ScalingActive")?.reason).toBe("ValidMetricFound");
  }, 180_000);

  it("kubectl autoscale creates an autoscaling/v1 HPA that reads back as v2", async () => {
    await deployment("auto", 1);
    const r = await kubectl("autoscale", "deployment", "auto", "--cpu-percent=50", "--min=1", "--max=5");
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("horizontalpodautoscaler.autoscaling/auto autoscaled");
    const v2 = await client.get("horizontalpodautoscalers", "auto", NS);
    expect(v2.spec?.metrics?.[0]?.resource?.target?.averageUtilization).toBe(50);
    expect(v2.spec?.maxReplicas).toBe(5);
    const v1 = await client.request<{ spec: Record<string, unknown> }>(
      "GET",
      `/apis/autoscaling/v1/namespaces/${NS}/horizontalpodautoscalers/auto`,
    );
    expect(v1.spec.targetCPUUtilizationPercentage).toBe(50);
  }, 60_000);

  it("kubectl drain waits on a budget that allows nothing, then drains within one that keeps 2 of 3", async () => {
    await deployment("spread", 3);
    const pods = await readyPods("spread", 3);
    const victim = pods[0]!.spec!.nodeName!;
    await budget("spread", "spread", 3);
    await allowed("spread", 0);
    const blocked = await kubectl(
      "drain",
      victim,
      "--ignore-daemonsets",
      "--delete-emptydir-data",
      "--timeout=8s",
    );
    expect(blocked.code).not.toBe(0);
    expect(blocked.stderr).toContain("Cannot evict pod as it would violate the pod's disruption budget.");
    expect((await client.get("nodes", victim)).spec?.unschedulable).toBe(true);
    await client.patch("poddisruptionbudgets", "spread", { spec: { minAvailable: 2 } }, { namespace: NS });
    await allowed("spread", 1);
    const drained = await kubectl(
      "drain",
      victim,
      "--ignore-daemonsets",
      "--delete-emptydir-data",
      "--timeout=60s",
    );
    expect(drained.stderr).not.toContain("error");
    expect(drained.stdout).toContain(`node/${victim} drained`);
    const after = await readyPods("spread", 3);
    expect(after.some((p) => p.spec?.nodeName === victim)).toBe(false);
    expect(
      (await podsOf("topped")).some((p) => p.spec?.nodeName === victim && !p.metadata?.deletionTimestamp),
    ).toBe(false);
    const unc = await kubectl("uncordon", victim);
    expect(unc.stdout.trim()).toBe(`node/${victim} uncordoned`);
    expect((await client.get("nodes", victim)).spec?.unschedulable).toBeFalsy();
  }, 180_000);
});
