import type { V1Deployment, V1ReplicaSet } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import type { V1PodTemplateSpec } from "@kubernetes/client-node";
import {
  findNewReplicaSet,
  HASH_LABEL,
  historyToDelete,
  podTemplateHash,
  resolveFenceposts,
  REVISION,
  REVISION_HISTORY,
  revivedRevisionAnnotations,
  rolloutStep,
} from "../../../../controlplane/controllers/deployment-rollout.ts";
import { templatesEqualIgnoringHash } from "../../../../controlplane/controllers/pod-template.ts";

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

/** A ReplicaSet's template as `kubectl rollout undo` sends it: decoded into Go structs and marshalled again. */
function undoTemplate(rs: V1ReplicaSet): V1PodTemplateSpec {
  const t = structuredClone(rs.spec!.template!);
  delete t.metadata!.labels![HASH_LABEL];
  return { ...t, metadata: { creationTimestamp: null as unknown as Date, ...t.metadata } };
}

describe("templatesEqualIgnoringHash", () => {
  const stored: V1PodTemplateSpec = {
    metadata: { labels: { app: "x", [HASH_LABEL]: "abc", empty: "" } },
    spec: {
      containers: [
        {
          name: "c",
          image: "i",
          args: ["a", ""],
          env: [{ name: "E", value: "" }],
          stdin: false,
          resources: { requests: { cpu: "0.5", memory: "1024Mi" } },
          readinessProbe: { httpGet: { port: 80, path: "/" }, initialDelaySeconds: 0 },
        },
      ],
      volumes: [{ name: "scratch", emptyDir: {} }],
      nodeSelector: {},
    },
  };
  // What kubectl sends back for it (Go's omitempty, canonical quantities, creationTimestamp: null).
  const roundTripped = {
    metadata: { creationTimestamp: null, labels: { app: "x", empty: "" } },
    spec: {
      containers: [
        {
          name: "c",
          image: "i",
          args: ["a", ""],
          env: [{ name: "E" }],
          resources: { requests: { cpu: "500m", memory: "1Gi" } },
          readinessProbe: { httpGet: { port: 80, path: "/" } },
        },
      ],
      volumes: [{ name: "scratch", emptyDir: {} }],
    },
  } as unknown as V1PodTemplateSpec;
  const changed = (f: (t: V1PodTemplateSpec) => void): V1PodTemplateSpec => {
    const t = structuredClone(stored);
    f(t);
    return t;
  };

  it("forgives what a Go client's round trip changes", () => {
    expect(templatesEqualIgnoringHash(stored, roundTripped)).toBe(true);
    expect(podTemplateHash(stored)).toBe(podTemplateHash(roundTripped));
  });

  it("still tells apart templates that mean different pods", () => {
    const differences: [string, (t: V1PodTemplateSpec) => void][] = [
      ["image", (t) => (t.spec!.containers[0]!.image = "j")],
      ["an empty label value", (t) => delete t.metadata!.labels!.empty],
      ["an empty argument", (t) => t.spec!.containers[0]!.args!.pop()],
      ["emptyDir vs downwardAPI", (t) => (t.spec!.volumes = [{ name: "scratch", downwardAPI: {} }])],
      ["automountServiceAccountToken: false", (t) => (t.spec!.automountServiceAccountToken = false)],
      ["runAsUser: 0", (t) => (t.spec!.securityContext = { runAsUser: 0 })],
      ["cpu request", (t) => (t.spec!.containers[0]!.resources!.requests!.cpu = "501m")],
      ["an annotation", (t) => (t.metadata!.annotations = { "kubectl.kubernetes.io/restartedAt": "now" })],
    ];
    for (const [what, f] of differences)
      expect(templatesEqualIgnoringHash(stored, changed(f)), what).toBe(false);
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
    const first = rss[0]!.metadata!.name;
    d.spec!.template!.spec!.containers[0]!.env = [{ name: "A", value: "1" }];
    simulate(d, rss, () => {});
    // kubectl rollout undo sends revision 1's template back as Go marshals it (creationTimestamp: null …).
    d.spec!.template = undoTemplate(rss[0]!);
    simulate(d, rss, () => {});
    expect(rss).toHaveLength(2);
    expect(rss.map((r) => [r.metadata?.name, r.spec?.replicas])).toEqual([
      [first, 2],
      [rss[1]!.metadata?.name, 0],
    ]);
    expect(rss[0]!.metadata?.annotations).toMatchObject({ [REVISION]: "3", [REVISION_HISTORY]: "1" });
    expect(rolloutStep(d, rss, 0).deploymentAnnotations[REVISION]).toBe("3");
    // --to-revision=2: the env ReplicaSet comes back as revision 4, keeping its history.
    d.spec!.template = undoTemplate(rss[1]!);
    simulate(d, rss, () => {});
    expect(rss.map((r) => r.spec?.replicas)).toEqual([0, 2]);
    expect(rss[1]!.metadata?.annotations).toMatchObject({ [REVISION]: "4", [REVISION_HISTORY]: "2" });
    // And back to the first again: its history grows.
    d.spec!.template = undoTemplate(rss[0]!);
    simulate(d, rss, () => {});
    expect(rss[0]!.metadata?.annotations).toMatchObject({ [REVISION]: "5", [REVISION_HISTORY]: "1,3" });
    expect(rss).toHaveLength(2);
  });

  it("the current ReplicaSet is found by template, not by name; the oldest of equal ones wins", () => {
    const d = deployment("v1", 2);
    const [rs] = simulate(d, [], () => {});
    const renamed = (name: string, created: string): V1ReplicaSet => ({
      ...structuredClone(rs!),
      metadata: { ...structuredClone(rs!.metadata), name, creationTimestamp: new Date(created) },
    });
    const a = renamed("web-made-by-an-older-server", "2026-01-02T00:00:00Z");
    const b = renamed("web-aaaa", "2026-01-03T00:00:00Z");
    expect(findNewReplicaSet(d, [b, a])?.metadata?.name).toBe("web-made-by-an-older-server");
    const step = rolloutStep(d, [b, a], 0);
    expect(step.create).toBeUndefined();
  });

  it("a hash collision (status.collisionCount) names the new ReplicaSet differently", () => {
    const d = deployment("v1", 1);
    const plain = rolloutStep(d, [], 0).create?.metadata?.name;
    d.status = { collisionCount: 1 };
    const bumped = rolloutStep(d, [], 0);
    expect(bumped.create?.metadata?.name).not.toBe(plain);
    expect(bumped.create?.metadata?.name).toBe(`web-${podTemplateHash(d.spec!.template, 1)}`);
    expect(bumped.create?.spec?.selector?.matchLabels?.[HASH_LABEL]).toBe(
      podTemplateHash(d.spec!.template, 1),
    );
    expect(bumped.status.collisionCount).toBe(1); // kept, or the name would flip back
  });

  it("copies the Deployment's annotations (change-cause) to its current ReplicaSet, not the kubectl ones", () => {
    const d = deployment("v1", 1);
    const rss = simulate(d, [], () => {});
    d.metadata!.annotations = {
      "kubernetes.io/change-cause": "kubectl set image",
      "kubectl.kubernetes.io/last-applied-configuration": "{}",
      [REVISION]: "1",
    };
    expect(rolloutStep(d, rss, 0).annotate).toEqual({
      [rss[0]!.metadata!.name!]: { "kubernetes.io/change-cause": "kubectl set image" },
    });
  });

  it("revision history: oldest settled empty ReplicaSets first; one with pods left is skipped, not replaced", () => {
    const d = deployment("v1", 1);
    d.spec!.revisionHistoryLimit = 1;
    const rs = (name: string, rev: number, extra: Partial<V1ReplicaSet> = {}): V1ReplicaSet => ({
      metadata: { name, annotations: { [REVISION]: String(rev) }, generation: 2, ...extra.metadata },
      spec: { selector: {}, replicas: 0, ...extra.spec },
      status: { replicas: 0, observedGeneration: 2, ...extra.status },
    });
    const old = [
      rs("r4", 4),
      rs("r1", 1, { status: { replicas: 1, observedGeneration: 2 } }), // a pod still terminating
      rs("r2", 2),
      rs("r3", 3, { metadata: { name: "r3", generation: 3 } }), // scale-down not yet observed
      rs("r5", 5, { spec: { selector: {}, replicas: 1 } }),
    ];
    // Cleanable: r1, r2, r4 (r3 unsettled, r5 scaled) → 2 over the limit → r1 (skipped), r2.
    expect(historyToDelete(d, old)).toEqual(["r2"]);
    d.spec!.revisionHistoryLimit = 0;
    expect(historyToDelete(d, old)).toEqual(["r2", "r4"]);
  });

  it("keeps old ReplicaSets while a rollout is in progress", () => {
    const d = deployment("v1", 1);
    d.spec!.revisionHistoryLimit = 0;
    const rss = simulate(d, [], () => {});
    d.spec!.template!.spec!.containers[0]!.image = "v2";
    const step = rolloutStep(d, rss, 0);
    expect(step.create).toBeDefined();
    expect(step.deleteOld).toEqual([]);
  });

  it("revision-history keeps the newest revisions within 2,000 characters", () => {
    const history = Array.from({ length: 400 }, (_, i) => String(1000 + i)).join(",");
    const a = revivedRevisionAnnotations(
      { metadata: { annotations: { [REVISION]: "1400", [REVISION_HISTORY]: history } } },
      1401,
    );
    expect(a[REVISION]).toBe("1401");
    expect(a[REVISION_HISTORY]!.length).toBeLessThanOrEqual(2000);
    expect(a[REVISION_HISTORY]!.endsWith(",1398,1399,1400")).toBe(true);
    // Never renumbered downwards, and a revision that is not a number is left alone.
    expect(revivedRevisionAnnotations({ metadata: { annotations: { [REVISION]: "9" } } }, 3)).toEqual({});
    expect(revivedRevisionAnnotations({ metadata: { annotations: { [REVISION]: "x" } } }, 3)).toEqual({});
    expect(revivedRevisionAnnotations({ metadata: {} }, 3)).toEqual({ [REVISION]: "3" });
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
