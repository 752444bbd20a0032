import type { V1Deployment, V1ReplicaSet } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import {
  HASH_LABEL,
  podTemplateHash,
  resolveFenceposts,
  REVISION,
  rolloutStep,
} from "../../controlplane/controllers/deployment-rollout.ts";

const deployment = (
  image: string,
  replicas: number,
  strategy: V1Deployment["spec"] extends infer S
    ? S extends { strategy?: infer T }
      ? T
      : never
    : never = {},
): V1Deployment => ({
  metadata: { name: "web", namespace: "default", uid: "d-uid", generation: 1 },
  spec: {
    replicas,
    selector: { matchLabels: { app: "web" } },
    template: { metadata: { labels: { app: "web" } }, spec: { containers: [{ name: "c", image }] } },
    strategy,
  },
});

/**
 * A tiny cluster: ReplicaSets whose pods appear at once and become available one tick later.
 * Applies rollout steps until nothing changes and checks the fenceposts at every tick.
 */
function simulate(
  d: V1Deployment,
  rss: V1ReplicaSet[],
  check: (rss: V1ReplicaSet[]) => void,
  maxTicks = 100,
): V1ReplicaSet[] {
  for (let tick = 0; tick < maxTicks; tick++) {
    // Pods: status.replicas follows spec at once; availability follows one tick later.
    for (const rs of rss) {
      const want = rs.spec?.replicas ?? 0;
      const prevAvail = rs.status?.availableReplicas ?? 0;
      const prevReplicas = rs.status?.replicas ?? 0;
      // New pods need a tick to become available; removed pods vanish at once (unready first).
      rs.status = {
        replicas: want,
        availableReplicas: Math.min(
          want,
          prevReplicas,
          want < prevReplicas ? want : prevAvail + (prevReplicas - prevAvail),
        ),
        readyReplicas: 0,
      };
      rs.status.readyReplicas = rs.status.availableReplicas;
    }
    check(rss);
    const step = rolloutStep(d, rss, 0);
    const changed =
      step.create || Object.keys(step.scale).length > 0 || Object.keys(step.annotate).length > 0;
    if (step.create) rss.push({ ...step.create, status: { replicas: 0, availableReplicas: 0 } });
    for (const [name, n] of Object.entries(step.scale))
      rss.find((r) => r.metadata?.name === name)!.spec!.replicas = n;
    for (const [name, a] of Object.entries(step.annotate)) {
      const r = rss.find((x) => x.metadata?.name === name)!;
      r.metadata!.annotations = { ...r.metadata!.annotations, ...a };
    }
    d.status = step.status;
    if (
      !changed &&
      rss.every(
        (r) =>
          (r.status?.replicas ?? 0) === (r.spec?.replicas ?? 0) &&
          r.status?.availableReplicas === r.status?.replicas,
      )
    ) {
      return rss;
    }
  }
  throw new Error("rollout did not converge");
}

const total = (rss: V1ReplicaSet[], f: (r: V1ReplicaSet) => number | undefined) =>
  rss.reduce((s, r) => s + (f(r) ?? 0), 0);

describe("podTemplateHash", () => {
  it("is stable across key order and ignores the hash label", () => {
    const a = {
      metadata: { labels: { app: "x", tier: "y" } },
      spec: { containers: [{ name: "c", image: "i" }] },
    };
    const b = {
      spec: { containers: [{ image: "i", name: "c" }] },
      metadata: { labels: { tier: "y", app: "x", [HASH_LABEL]: "zzz" } },
    };
    expect(podTemplateHash(a)).toBe(podTemplateHash(b));
    expect(podTemplateHash(a)).toMatch(/^[bcdfghjklmnpqrstvwxz2456789]+$/);
    expect(podTemplateHash({ ...a, spec: { containers: [{ name: "c", image: "j" }] } })).not.toBe(
      podTemplateHash(a),
    );
  });
});

describe("resolveFenceposts", () => {
  it("rounds surge up and unavailable down; both zero means one unavailable", () => {
    expect(resolveFenceposts(deployment("i", 10))).toEqual({ maxSurge: 3, maxUnavailable: 2 });
    expect(
      resolveFenceposts(deployment("i", 3, { rollingUpdate: { maxSurge: 0, maxUnavailable: 0 } })),
    ).toEqual({ maxSurge: 0, maxUnavailable: 1 });
    expect(
      resolveFenceposts(deployment("i", 4, { rollingUpdate: { maxSurge: "50%", maxUnavailable: 1 } })),
    ).toEqual({ maxSurge: 2, maxUnavailable: 1 });
  });
});

describe("rolloutStep", () => {
  it("creates the first ReplicaSet at full scale with revision 1, then reports completion", () => {
    const d = deployment("v1", 3);
    const rss = simulate(d, [], () => {});
    expect(rss).toHaveLength(1);
    expect(rss[0]!.metadata?.name).toBe(`web-${podTemplateHash(d.spec!.template)}`);
    expect(rss[0]!.metadata?.annotations?.[REVISION]).toBe("1");
    expect(rss[0]!.spec?.selector?.matchLabels?.[HASH_LABEL]).toBeDefined();
    expect(rss[0]!.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: "Deployment",
      uid: "d-uid",
      controller: true,
    });
    expect(d.status).toMatchObject({
      replicas: 3,
      updatedReplicas: 3,
      availableReplicas: 3,
      observedGeneration: 1,
    });
    expect(d.status?.conditions?.find((c) => c.type === "Progressing")?.reason).toBe(
      "NewReplicaSetAvailable",
    );
    expect(d.status?.conditions?.find((c) => c.type === "Available")?.status).toBe("True");
  });

  it("scales 3 → 5 → 2 in place", () => {
    const d = deployment("v1", 3);
    const rss = simulate(d, [], () => {});
    d.spec!.replicas = 5;
    simulate(d, rss, () => {});
    expect(rss[0]!.spec?.replicas).toBe(5);
    d.spec!.replicas = 2;
    simulate(d, rss, () => {});
    expect(rss[0]!.spec?.replicas).toBe(2);
    expect(rss).toHaveLength(1);
  });

  for (const [surge, unavail] of [
    [0, 1],
    [1, 0],
    [2, 1],
    ["25%", "25%"],
  ] as const) {
    it(`rolling update (maxSurge ${surge}, maxUnavailable ${unavail}) stays within bounds and finishes on the new template`, () => {
      const d = deployment("v1", 4, {
        type: "RollingUpdate",
        rollingUpdate: { maxSurge: surge, maxUnavailable: unavail },
      });
      const rss = simulate(d, [], () => {});
      d.spec!.template!.spec!.containers[0]!.image = "v2";
      const { maxSurge, maxUnavailable } = resolveFenceposts(d);
      simulate(d, rss, (now) => {
        expect(total(now, (r) => r.status?.availableReplicas)).toBeGreaterThanOrEqual(4 - maxUnavailable);
        expect(total(now, (r) => r.spec?.replicas)).toBeLessThanOrEqual(4 + maxSurge);
      });
      expect(rss).toHaveLength(2);
      expect(rss[0]!.spec?.replicas).toBe(0);
      expect(rss[1]!.spec?.replicas).toBe(4);
      expect(rss[1]!.metadata?.annotations?.[REVISION]).toBe("2");
      expect(d.status?.updatedReplicas).toBe(4);
    });
  }

  it("Recreate scales the old ReplicaSet to zero before creating pods of the new one", () => {
    const d = deployment("v1", 3, { type: "Recreate" });
    const rss = simulate(d, [], () => {});
    d.spec!.template!.spec!.containers[0]!.image = "v2";
    simulate(d, rss, (now) => {
      const oldPods = now[0]!.status?.replicas ?? 0;
      const newPods = now[1]?.status?.replicas ?? 0;
      expect(oldPods > 0 && newPods > 0).toBe(false);
    });
    expect(rss.map((r) => r.spec?.replicas)).toEqual([0, 3]);
  });

  it("rollout undo: the old template's ReplicaSet is scaled back up and becomes the newest revision", () => {
    const d = deployment("v1", 2);
    const rss = simulate(d, [], () => {});
    d.spec!.template!.spec!.containers[0]!.image = "v2";
    simulate(d, rss, () => {});
    // kubectl rollout undo copies revision 1's template (without the hash label) back into the Deployment.
    const t = structuredClone(rss[0]!.spec!.template!);
    delete t.metadata!.labels![HASH_LABEL];
    d.spec!.template = t;
    simulate(d, rss, () => {});
    expect(rss).toHaveLength(2);
    expect(rss.map((r) => r.spec?.replicas)).toEqual([2, 0]);
    expect(rss[0]!.metadata?.annotations?.[REVISION]).toBe("3");
  });

  it("deletes empty old ReplicaSets beyond revisionHistoryLimit, oldest first", () => {
    const d = deployment("v1", 1);
    d.spec!.revisionHistoryLimit = 1;
    const rss = simulate(d, [], () => {});
    for (const img of ["v2", "v3"]) {
      d.spec!.template!.spec!.containers[0]!.image = img;
      simulate(d, rss, () => {});
    }
    const step = rolloutStep(d, rss, 0);
    expect(step.deleteOld).toEqual([rss[0]!.metadata?.name]);
  });

  it("a paused Deployment does not roll out a new template", () => {
    const d = deployment("v1", 2);
    const rss = simulate(d, [], () => {});
    d.spec!.paused = true;
    d.spec!.template!.spec!.containers[0]!.image = "v2";
    const step = rolloutStep(d, rss, 0);
    expect(step.create).toBeUndefined();
    expect(step.scale).toEqual({});
  });

  it("reports ProgressDeadlineExceeded when nothing moved for progressDeadlineSeconds", () => {
    const d = deployment("v1", 2);
    d.spec!.progressDeadlineSeconds = 10;
    const rs: V1ReplicaSet[] = [];
    const s1 = rolloutStep(d, rs, 0);
    rs.push({ ...s1.create!, status: { replicas: 2, availableReplicas: 0 } });
    d.status = rolloutStep(d, rs, 1_000).status;
    const later = rolloutStep(d, rs, 20_000).status;
    expect(later.conditions?.find((c) => c.type === "Progressing")).toMatchObject({
      status: "False",
      reason: "ProgressDeadlineExceeded",
    });
  });
});
