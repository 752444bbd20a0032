import type { V1Node, V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import type { V1PersistentVolumeClaim, V1PreferredSchedulingTerm } from "@kubernetes/client-node";
import type { ClaimLookup } from "../../../../controlplane/scheduler/decision.ts";
import {
  needsScheduling,
  scheduleDecision,
  usageByNode,
} from "../../../../controlplane/scheduler/decision.ts";
import { milliCpu, parseQuantity } from "../../../../controlplane/scheduler/quantity.ts";

const node = (
  name: string,
  extra: Partial<V1Node["spec"]> = {},
  labels: Record<string, string> = {},
  ready = true,
): V1Node => ({
  metadata: { name, labels },
  spec: extra,
  status: {
    allocatable: { cpu: "2", memory: "4Gi", pods: "110" },
    conditions: [{ type: "Ready", status: ready ? "True" : "False" }],
  },
});

const pod = (
  name: string,
  o: { cpu?: string; mem?: string; node?: string; owner?: string; spec?: Partial<V1Pod["spec"]> } = {},
): V1Pod => ({
  metadata: {
    name,
    namespace: "default",
    ownerReferences: o.owner
      ? [{ apiVersion: "apps/v1", kind: "ReplicaSet", name: "rs", uid: o.owner, controller: true }]
      : undefined,
  },
  spec: {
    nodeName: o.node,
    containers: [
      {
        name: "c",
        image: "x",
        resources: { requests: { ...(o.cpu ? { cpu: o.cpu } : {}), ...(o.mem ? { memory: o.mem } : {}) } },
      },
    ],
    ...o.spec,
  },
});

const decide = (p: V1Pod, nodes: V1Node[], pods: V1Pod[] = []) =>
  scheduleDecision(p, nodes, usageByNode(pods));

describe("quantities", () => {
  it("parses cpu and memory forms", () => {
    expect(milliCpu("100m")).toBe(100);
    expect(milliCpu("1.5")).toBe(1500);
    expect(parseQuantity("128Mi")).toBe(128 * 2 ** 20);
    expect(parseQuantity("1G")).toBe(1e9);
    expect(parseQuantity("1e3")).toBe(1000);
    expect(parseQuantity("bogus")).toBe(0);
  });
});

describe("scheduleDecision filters", () => {
  it("skips nodes that are not ready or unschedulable", () => {
    const d = decide(pod("p"), [node("a", {}, {}, false), node("b", { unschedulable: true }), node("c")]);
    expect(d).toMatchObject({ node: "c" });
  });

  it("respects taints unless tolerated", () => {
    const tainted = node("a", { taints: [{ key: "dedicated", value: "db", effect: "NoSchedule" }] });
    const d = decide(pod("p"), [tainted]);
    expect("reasons" in d && d.message).toBe(
      "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: db}.",
    );
    const tolerating = pod("p", {
      spec: { tolerations: [{ key: "dedicated", operator: "Equal", value: "db", effect: "NoSchedule" }] },
    });
    expect(decide(tolerating, [tainted])).toMatchObject({ node: "a" });
    const exists = pod("p", { spec: { tolerations: [{ operator: "Exists" }] } });
    expect(decide(exists, [tainted])).toMatchObject({ node: "a" });
    // PreferNoSchedule does not filter.
    expect(
      decide(pod("p"), [node("b", { taints: [{ key: "k", effect: "PreferNoSchedule" }] })]),
    ).toMatchObject({ node: "b" });
  });

  it("counts requests of pods already bound, and not of finished ones", () => {
    const bound = [pod("x", { cpu: "1500m", node: "a" })];
    const d = decide(pod("p", { cpu: "1" }), [node("a")], bound);
    expect("reasons" in d && d.reasons).toEqual({ a: ["Insufficient cpu"] });
    const done = [{ ...pod("x", { cpu: "1500m", node: "a" }), status: { phase: "Succeeded" } }];
    expect(decide(pod("p", { cpu: "1" }), [node("a")], done)).toMatchObject({ node: "a" });
    const mem = decide(pod("p", { mem: "5Gi" }), [node("a")]);
    expect("reasons" in mem && mem.message).toBe("0/1 nodes are available: 1 Insufficient memory.");
  });

  it("applies nodeSelector and required node affinity on labels", () => {
    const nodes = [node("a", {}, { disk: "hdd", zone: "1" }), node("b", {}, { disk: "ssd", zone: "2" })];
    expect(decide(pod("p", { spec: { nodeSelector: { disk: "ssd" } } }), nodes)).toMatchObject({ node: "b" });
    const affinity = (operator: string, values?: string[]) =>
      pod("p", {
        spec: {
          affinity: {
            nodeAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: {
                nodeSelectorTerms: [{ matchExpressions: [{ key: "zone", operator, values }] }],
              },
            },
          },
        },
      });
    expect(decide(affinity("In", ["1"]), nodes)).toMatchObject({ node: "a" });
    expect(decide(affinity("NotIn", ["1"]), nodes)).toMatchObject({ node: "b" });
    expect(decide(affinity("Gt", ["1"]), nodes)).toMatchObject({ node: "b" });
    const none = decide(affinity("In", ["9"]), nodes);
    expect("reasons" in none && none.message).toBe(
      "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.",
    );
  });

  it("honours matchFields on metadata.name, ANDed with matchExpressions in a term, terms ORed", () => {
    const nodes = [node("a", {}, { zone: "1" }), node("b", {}, { zone: "1" }), node("c", {}, { zone: "2" })];
    const terms = (...t: object[]) =>
      pod("p", {
        spec: {
          affinity: {
            nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: t } },
          },
        },
      });
    const notA = { matchFields: [{ key: "metadata.name", operator: "NotIn", values: ["a"] }] };
    expect(decide(terms(notA), nodes)).toMatchObject({ node: "b" });
    const onlyC = { matchFields: [{ key: "metadata.name", operator: "In", values: ["c"] }] };
    expect(decide(terms(onlyC), nodes)).toMatchObject({ node: "c" });
    // zone 1 AND not a → b; ORed with a term that matches nothing else
    const zone1NotA = { ...notA, matchExpressions: [{ key: "zone", operator: "In", values: ["1"] }] };
    const d = decide(terms(zone1NotA), [nodes[0]!, nodes[2]!]);
    expect("reasons" in d && d.message).toBe(
      "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.",
    );
    expect(decide(terms(zone1NotA, onlyC), [nodes[0]!, nodes[2]!])).toMatchObject({ node: "c" });
    // upstream needs exactly one value, and only In/NotIn: otherwise the term matches nothing
    const twoValues = { matchFields: [{ key: "metadata.name", operator: "In", values: ["a", "b"] }] };
    expect("reasons" in decide(terms(twoValues), nodes)).toBe(true);
    const exists = { matchFields: [{ key: "metadata.name", operator: "Exists" }] };
    expect("reasons" in decide(terms(exists), nodes)).toBe(true);
    // an empty term selects nothing
    expect("reasons" in decide(terms({}), nodes)).toBe(true);
  });

  it("prefers nodes matching preferred terms by weight, matchFields included", () => {
    const nodes = [node("a"), node("b"), node("c")];
    const preferred = (t: V1PreferredSchedulingTerm[]) =>
      pod("p", {
        spec: { affinity: { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: t } } },
      });
    const onName = (name: string) => ({
      matchFields: [{ key: "metadata.name", operator: "In", values: [name] }],
    });
    expect(decide(preferred([{ weight: 10, preference: onName("c") }]), nodes)).toMatchObject({ node: "c" });
    expect(
      decide(
        preferred([
          { weight: 10, preference: onName("b") },
          { weight: 50, preference: onName("c") },
        ]),
        nodes,
      ),
    ).toMatchObject({ node: "c" });
    // preference never overrides a filter
    const full = decide(preferred([{ weight: 100, preference: onName("a") }]), [
      node("a", { unschedulable: true }),
      node("b"),
    ]);
    expect(full).toMatchObject({ node: "b" });
  });

  it("keeps a pod whose claim is missing, lost, being deleted or unbound off every node", () => {
    const nodes = [node("a"), node("b"), node("c")];
    const withClaim = pod("p", {
      spec: { volumes: [{ name: "d", persistentVolumeClaim: { claimName: "data" } }] },
    });
    const claims =
      (pvc?: V1PersistentVolumeClaim): ClaimLookup =>
      (ns, name) =>
        ns === "default" && name === "data" ? pvc : undefined;
    const missing = decide(withClaim, nodes, []);
    expect(missing).toMatchObject({ node: "a" }); // without a claim lookup nothing is checked
    const msg = (pvc?: V1PersistentVolumeClaim) => {
      const d = scheduleDecision(withClaim, nodes, new Map(), { claims: claims(pvc) });
      return "reasons" in d ? d.message : d.node;
    };
    expect(msg()).toBe('0/3 nodes are available: persistentvolumeclaim "data" not found.');
    expect(msg({ metadata: { name: "data" }, status: { phase: "Pending" } })).toBe(
      "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
    );
    expect(msg({ metadata: { name: "data" }, spec: { volumeName: "pv1" }, status: { phase: "Lost" } })).toBe(
      '0/3 nodes are available: persistentvolumeclaim "data" bound to non-existent persistentvolume "pv1".',
    );
    expect(
      msg({ metadata: { name: "data", deletionTimestamp: new Date() }, status: { phase: "Bound" } }),
    ).toBe('0/3 nodes are available: persistentvolumeclaim "data" is being deleted.');
    expect(msg({ metadata: { name: "data" }, status: { phase: "Bound" } })).toBe("a");
  });

  it("refuses a host port already taken on the node", () => {
    const withPort = (name: string, n?: string): V1Pod => ({
      metadata: { name, namespace: "default" },
      spec: {
        nodeName: n,
        containers: [{ name: "c", image: "x", ports: [{ containerPort: 80, hostPort: 8080 }] }],
      },
    });
    const d = decide(withPort("p"), [node("a"), node("b")], [withPort("q", "a")]);
    expect(d).toMatchObject({ node: "b" });
    const none = decide(withPort("p"), [node("a")], [withPort("q", "a")]);
    expect("reasons" in none && none.reasons.a).toEqual([
      "node(s) didn't have free ports for the requested pod ports",
    ]);
  });

  it("summarizes reasons per node with counts", () => {
    const d = decide(pod("p", { cpu: "3" }), [node("a"), node("b"), node("c", {}, {}, false)]);
    expect("reasons" in d && d.message).toBe(
      "0/3 nodes are available: 1 node(s) were not ready, 3 Insufficient cpu.",
    );
  });
});

describe("scheduleDecision scores", () => {
  it("prefers the less loaded node", () => {
    const bound = [pod("x", { cpu: "1", mem: "1Gi", node: "a" })];
    expect(decide(pod("p", { cpu: "100m", mem: "100Mi" }), [node("a"), node("b")], bound)).toMatchObject({
      node: "b",
    });
  });

  it("spreads pods of one owner: 3 replicas over 2 nodes land 2+1, 30 over 3 land 10 each", () => {
    const nodes = [node("a"), node("b"), node("c")];
    const placed: V1Pod[] = [];
    for (let i = 0; i < 30; i++) {
      const p = pod(`p${i}`, { owner: "rs1", cpu: "10m", mem: "10Mi" });
      const d = decide(p, nodes, placed);
      if (!("node" in d)) throw new Error("unschedulable");
      placed.push({ ...p, spec: { ...p.spec!, nodeName: d.node } });
    }
    const per = (n: string) => placed.filter((p) => p.spec?.nodeName === n).length;
    expect([per("a"), per("b"), per("c")]).toEqual([10, 10, 10]);
  });

  it("spreads one owner even when another owner loads a node", () => {
    const other = [pod("o1", { owner: "rs2", node: "a" }), pod("o2", { owner: "rs2", node: "a" })];
    const mine = [pod("m1", { owner: "rs1", node: "b" })];
    expect(decide(pod("p", { owner: "rs1" }), [node("a"), node("b")], [...other, ...mine])).toMatchObject({
      node: "a",
    });
  });
});

describe("needsScheduling", () => {
  it("only pending pods of this scheduler", () => {
    expect(needsScheduling(pod("p"))).toBe(true);
    expect(needsScheduling(pod("p", { node: "a" }))).toBe(false);
    expect(needsScheduling(pod("p", { spec: { schedulerName: "other" } }))).toBe(false);
    expect(needsScheduling({ ...pod("p"), metadata: { name: "p", deletionTimestamp: new Date() } })).toBe(
      false,
    );
  });
});
