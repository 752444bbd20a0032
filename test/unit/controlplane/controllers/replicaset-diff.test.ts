import type { V1Pod, V1ReplicaSet } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { replicaSetDiff } from "../../../../controlplane/controllers/replicaset-diff.ts";

const rs = (replicas: number, extra: Partial<V1ReplicaSet["metadata"]> = {}): V1ReplicaSet => ({
  metadata: { name: "web", namespace: "default", uid: "rs-uid", generation: 4, ...extra },
  spec: {
    replicas,
    selector: { matchLabels: { app: "web" } },
    template: { metadata: { labels: { app: "web" } } },
  },
});

let n = 0;
const pod = (
  o: {
    owner?: string;
    labels?: Record<string, string>;
    node?: string;
    ready?: boolean;
    phase?: string;
    deleting?: boolean;
    created?: number;
  } = {},
): V1Pod => ({
  metadata: {
    name: `p${n++}`,
    namespace: "default",
    labels: o.labels ?? { app: "web" },
    creationTimestamp: new Date(o.created ?? 1000) as Date,
    ...(o.deleting ? { deletionTimestamp: new Date() } : {}),
    ...(o.owner
      ? {
          ownerReferences: [
            { apiVersion: "apps/v1", kind: "ReplicaSet", name: "x", uid: o.owner, controller: true },
          ],
        }
      : {}),
  },
  spec: { nodeName: o.node, containers: [] },
  status: {
    phase: o.phase ?? (o.node ? "Running" : "Pending"),
    conditions: o.ready ? [{ type: "Ready", status: "True" }] : [],
  },
});

describe("replicaSetDiff", () => {
  it("creates the missing pods and reports status", () => {
    const pods = [pod({ owner: "rs-uid", node: "a", ready: true })];
    const d = replicaSetDiff(rs(3), pods, Date.now());
    expect(d.create).toBe(2);
    expect(d.delete).toEqual([]);
    expect(d.status).toMatchObject({
      replicas: 1,
      readyReplicas: 1,
      availableReplicas: 1,
      observedGeneration: 4,
    });
  });

  it("deletes the worst pods first: unscheduled, then not ready, then newest", () => {
    const readyOld = pod({ owner: "rs-uid", node: "a", ready: true, created: 1 });
    const readyNew = pod({ owner: "rs-uid", node: "a", ready: true, created: 50 });
    const unready = pod({ owner: "rs-uid", node: "b", ready: false });
    const unscheduled = pod({ owner: "rs-uid" });
    const d = replicaSetDiff(rs(1), [readyOld, unready, readyNew, unscheduled], Date.now());
    expect(d.delete.map((p) => p.metadata?.name)).toEqual(
      [unscheduled, unready, readyNew].map((p) => p.metadata?.name),
    );
  });

  it("ignores pods being deleted or finished, so it replaces them", () => {
    const pods = [
      pod({ owner: "rs-uid", node: "a", deleting: true, ready: true }),
      pod({ owner: "rs-uid", node: "a", phase: "Failed" }),
    ];
    expect(replicaSetDiff(rs(2), pods, Date.now()).create).toBe(2);
  });

  it("adopts matching orphans, releases owned pods that stopped matching, leaves others' pods alone", () => {
    const orphan = pod({ node: "a", ready: true });
    const strayed = pod({ owner: "rs-uid", labels: { app: "other" } });
    const foreign = pod({ owner: "someone-else", node: "a" });
    const d = replicaSetDiff(rs(2), [orphan, strayed, foreign], Date.now());
    expect(d.adopt).toEqual([orphan]);
    expect(d.release).toEqual([strayed]);
    expect(d.create).toBe(1);
  });

  it("a ReplicaSet being deleted adopts nothing and creates nothing", () => {
    const d = replicaSetDiff(rs(3, { deletionTimestamp: new Date() }), [pod({ node: "a" })], Date.now());
    expect(d.adopt).toEqual([]);
    expect(d.create).toBe(0);
  });

  it("counts pods available only after minReadySeconds", () => {
    const now = Date.now();
    const p = pod({ owner: "rs-uid", node: "a", ready: true });
    p.status!.conditions![0]!.lastTransitionTime = new Date(now - 5_000);
    const set = { ...rs(1), spec: { ...rs(1).spec!, minReadySeconds: 10 } };
    expect(replicaSetDiff(set, [p], now).status.availableReplicas).toBe(0);
    expect(replicaSetDiff(set, [p], now + 6_000).status.availableReplicas).toBe(1);
  });
});
