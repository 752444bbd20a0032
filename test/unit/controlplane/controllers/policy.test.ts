import type { V1Pod, V1PodDisruptionBudget, V2HorizontalPodAutoscaler } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { rateNanoCores } from "../../../../api/metrics.ts";
import { cpuReplicas, normalize } from "../../../../controlplane/controllers/hpa-decision.ts";
import { budgetStatus } from "../../../../controlplane/disruption/budget.ts";
import { hpaV1toV2, hpaV2toV1 } from "../../../../controlplane/server/conversion.ts";
import type { KObject } from "../../../../controlplane/registry.ts";
import { meminfoWorkingSet, procStatBusyNs } from "../../../../node/stats.ts";

const pod = (name: string, ready = true, cpu = "100m"): V1Pod => ({
  metadata: { name },
  spec: { containers: [{ name: "c", resources: { requests: { cpu } } }] },
  status: { phase: "Running", conditions: [{ type: "Ready", status: ready ? "True" : "False" }] },
});

describe("disruption budget arithmetic", () => {
  it("minAvailable as a number, maxUnavailable as a percentage of the controllers' scale", () => {
    const pods = [pod("a"), pod("b"), pod("c", false)];
    const min: V1PodDisruptionBudget = { spec: { minAvailable: 2 } };
    expect(budgetStatus(min, pods, undefined, Date.now())).toEqual({
      expectedPods: 3,
      desiredHealthy: 2,
      currentHealthy: 2,
      disruptionsAllowed: 0,
    });
    const max: V1PodDisruptionBudget = { spec: { maxUnavailable: "50%" } };
    // 50% of 4 rounds up to 2: 2 must stay healthy, 2 are
    expect(budgetStatus(max, pods, 4, Date.now()).desiredHealthy).toBe(2);
    // a pod evicted a moment ago no longer counts as healthy
    const spent: V1PodDisruptionBudget = {
      spec: { minAvailable: 1 },
      status: { disruptedPods: { a: new Date().toISOString() as unknown as Date } } as never,
    };
    expect(budgetStatus(spent, pods, undefined, Date.now()).currentHealthy).toBe(1);
  });
});

describe("HPA arithmetic", () => {
  it("scales by the usage ratio, holds inside the 10% tolerance, fills unready pods as idle going up", () => {
    expect(cpuReplicas(1, 50, [pod("a")], new Map([["a", 200]])).replicas).toBe(4);
    expect(
      cpuReplicas(
        2,
        50,
        [pod("a"), pod("b")],
        new Map([
          ["a", 52],
          ["b", 50],
        ]),
      ).replicas,
    ).toBe(2);
    expect(
      cpuReplicas(
        2,
        50,
        [pod("a"), pod("b", false)],
        new Map([
          ["a", 200],
          ["b", 0],
        ]),
      ).replicas,
    ).toBe(4);
    expect(() => cpuReplicas(1, 50, [pod("a")], new Map())).toThrow(/no metrics returned/);
  });

  it("keeps the highest recommendation of the scale-down window and caps at maxReplicas", () => {
    const hpa: V2HorizontalPodAutoscaler = {
      spec: { minReplicas: 1, maxReplicas: 5, scaleTargetRef: { kind: "Deployment", name: "x" } },
    };
    const now = 1_000_000;
    const recent = [{ at: now - 60_000, replicas: 4 }];
    expect(normalize(hpa, 4, 1, recent, [], now)).toMatchObject({ replicas: 4, stabilized: true });
    expect(normalize(hpa, 4, 1, [{ at: now - 301_000, replicas: 4 }], [], now).replicas).toBe(1);
    // from 1, the default scale-up policies allow max(1 + 4 pods, 1 + 100%) = 5 per 15 s
    expect(normalize(hpa, 1, 9, [], [], now)).toMatchObject({ replicas: 5, limitedBy: "ScaleUpLimit" });
    expect(normalize(hpa, 4, 9, [], [], now)).toMatchObject({ replicas: 5, limitedBy: "TooManyReplicas" });
  });
});

describe("autoscaling v1 ⇄ v2", () => {
  it("round-trips what v1 cannot say through upstream's annotations", () => {
    const v2 = {
      apiVersion: "autoscaling/v2",
      kind: "HorizontalPodAutoscaler",
      metadata: { name: "x" },
      spec: {
        scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "x" },
        minReplicas: 1,
        maxReplicas: 3,
        metrics: [
          {
            type: "Resource",
            resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 60 } },
          },
          {
            type: "Resource",
            resource: { name: "memory", target: { type: "AverageValue", averageValue: "1Gi" } },
          },
        ],
        behavior: { scaleDown: { stabilizationWindowSeconds: 10 } },
      },
      status: {},
    } as KObject;
    const v1 = hpaV2toV1(v2);
    expect((v1.spec as Record<string, unknown>).targetCPUUtilizationPercentage).toBe(60);
    expect(hpaV1toV2(v1).spec).toEqual(v2.spec);
    expect(hpaV1toV2(v1).metadata.annotations).toBeUndefined();
  });
});

describe("node usage from /proc", () => {
  it("busy time, working set and the rate between two readings", () => {
    expect(procStatBusyNs("cpu  100 0 50 1000 20 5 5 0 0 0\ncpu0 1 2 3 4\n")).toBe(160 * 1e7);
    expect(meminfoWorkingSet("MemTotal:       2048 kB\nMemFree: 1 kB\nMemAvailable:   1024 kB\n")).toBe(
      1024 * 1024,
    );
    expect(
      rateNanoCores({ usageCoreNanoSeconds: 0, atMs: 0 }, { usageCoreNanoSeconds: 5e8, atMs: 1000 }),
    ).toBe(5e8);
    expect(rateNanoCores(undefined, { usageCoreNanoSeconds: 5e8, atMs: 1000 })).toBeUndefined();
  });
});
