import type { V1Node, V1Pod, V1Service } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { endpointsEqual, endpointsFor } from "../../../../controlplane/controllers/endpoints-for.ts";
import {
  dependentAction,
  ownerFinalizerToRemove,
  ownerState,
} from "../../../../controlplane/controllers/gc-decision.ts";
import { allocatePodCidrs, cidrPool } from "../../../../controlplane/controllers/ipam.ts";
import {
  NODE_LIFECYCLE_DEFAULTS,
  nodeLifecycleDecision,
  podEvictionTime,
  UNREACHABLE_TAINT,
} from "../../../../controlplane/controllers/node-lifecycle-decision.ts";

const svc = (
  ports: NonNullable<V1Service["spec"]>["ports"],
  selector: Record<string, string> | undefined = { app: "web" },
): V1Service => ({
  metadata: { name: "web", namespace: "default", labels: { team: "a" } },
  spec: { selector, ports },
});
const pod = (
  name: string,
  ip: string | undefined,
  ready: boolean,
  o: Partial<V1Pod["spec"]> = {},
  labels = { app: "web" },
): V1Pod => ({
  metadata: { name, namespace: "default", uid: `${name}-uid`, labels },
  spec: {
    nodeName: "n1",
    containers: [{ name: "c", image: "x", ports: [{ name: "http", containerPort: 8080 }] }],
    ...o,
  },
  status: { phase: "Running", podIP: ip, conditions: [{ type: "Ready", status: ready ? "True" : "False" }] },
});

describe("endpointsFor", () => {
  it("lists ready and not-ready pod addresses with resolved ports, sorted", () => {
    const e = endpointsFor(svc([{ name: "web", port: 80, targetPort: "http" }]), [
      pod("b", "10.0.0.10", true),
      pod("a", "10.0.0.9", true),
      pod("c", "10.0.0.11", false),
      pod("noip", undefined, true),
      pod("other", "10.0.0.12", true, {}, { app: "db" }),
    ])!;
    expect(e.metadata).toMatchObject({ name: "web", namespace: "default", labels: { team: "a" } });
    expect(e.subsets).toHaveLength(1);
    expect(e.subsets![0]!.addresses!.map((a) => a.ip)).toEqual(["10.0.0.9", "10.0.0.10"]);
    expect(e.subsets![0]!.addresses![0]!.targetRef).toMatchObject({ kind: "Pod", name: "a", uid: "a-uid" });
    expect(e.subsets![0]!.notReadyAddresses!.map((a) => a.ip)).toEqual(["10.0.0.11"]);
    expect(e.subsets![0]!.ports).toEqual([{ name: "web", port: 8080, protocol: "TCP" }]);
  });

  it("groups pods whose named port resolves differently; skips pods without the named port", () => {
    const other = pod("b", "10.0.0.2", true, {
      containers: [{ name: "c", image: "x", ports: [{ name: "http", containerPort: 9090 }] }],
    });
    const none = pod("c", "10.0.0.3", true, { containers: [{ name: "c", image: "x" }] });
    const e = endpointsFor(svc([{ port: 80, targetPort: "http" }]), [
      pod("a", "10.0.0.1", true),
      other,
      none,
    ])!;
    expect(e.subsets!.map((s) => [s.addresses!.map((a) => a.ip), s.ports![0]!.port])).toEqual([
      [["10.0.0.1"], 8080],
      [["10.0.0.2"], 9090],
    ]);
  });

  it("uses numeric targetPort or port; none for a Service without selector", () => {
    const e = endpointsFor(svc([{ port: 80 }]), [pod("a", "10.0.0.1", true)])!;
    expect(e.subsets![0]!.ports![0]!.port).toBe(80);
    expect(
      endpointsFor({ metadata: { name: "ext", namespace: "default" }, spec: { ports: [{ port: 80 }] } }, []),
    ).toBeUndefined();
    expect(endpointsEqual(e, endpointsFor(svc([{ port: 80 }]), [pod("a", "10.0.0.1", true)])!)).toBe(true);
  });

  it("leaves out pods being deleted and finished pods; publishNotReadyAddresses makes unready ones ready", () => {
    const deleting = {
      ...pod("d", "10.0.0.4", true),
      metadata: { ...pod("d", "1", true).metadata, deletionTimestamp: new Date() },
    };
    const done = { ...pod("f", "10.0.0.5", false), status: { phase: "Succeeded", podIP: "10.0.0.5" } };
    expect(endpointsFor(svc([{ port: 80 }]), [deleting, done])!.subsets).toEqual([]);
    const s = svc([{ port: 80 }]);
    s.spec!.publishNotReadyAddresses = true;
    expect(endpointsFor(s, [pod("a", "10.0.0.1", false)])!.subsets![0]!.addresses).toHaveLength(1);
  });
});

const node = (
  ready: string,
  taints: V1Node["spec"] extends infer S ? (S extends { taints?: infer T } ? T : never) : never = [],
): V1Node => ({
  metadata: { name: "n1" },
  spec: { taints },
  status: { conditions: [{ type: "Ready", status: ready }] },
});

describe("nodeLifecycleDecision", () => {
  const opts = NODE_LIFECYCLE_DEFAULTS;
  it("leaves a node with a fresh heartbeat alone", () => {
    expect(nodeLifecycleDecision(node("True"), 100_000, 120_000, opts)).toEqual({});
  });
  it("marks a silent node Ready=Unknown and taints it unreachable NoExecute", () => {
    const c = nodeLifecycleDecision(node("True"), 0, 41_000, opts);
    expect(c.readyCondition).toMatchObject({ type: "Ready", status: "Unknown", reason: "NodeStatusUnknown" });
    expect(c.taints).toEqual([expect.objectContaining({ key: UNREACHABLE_TAINT, effect: "NoExecute" })]);
    // Run twice: once marked, nothing more to do.
    const marked = node("Unknown", c.taints);
    expect(nodeLifecycleDecision(marked, 0, 50_000, opts)).toEqual({});
  });
  it("removes the taint when the node is Ready again and keeps the user's taints", () => {
    const user = { key: "dedicated", value: "db", effect: "NoSchedule" };
    const c = nodeLifecycleDecision(
      node("True", [user, { key: UNREACHABLE_TAINT, effect: "NoExecute" }]),
      100,
      200,
      opts,
    );
    expect(c.taints).toEqual([user]);
  });
  it("gives a new node without a Ready condition its grace period", () => {
    const fresh: V1Node = { metadata: { name: "n1" }, spec: {} };
    expect(nodeLifecycleDecision(fresh, 0, 10_000, opts)).toEqual({});
    expect(nodeLifecycleDecision(fresh, 0, 41_000, opts).taints?.[0]?.key).toBe(UNREACHABLE_TAINT);
  });
  it("a node reporting Ready=False gets the not-ready taint", () => {
    expect(nodeLifecycleDecision(node("False"), 100, 200, opts).taints).toEqual([
      expect.objectContaining({ key: "node.kubernetes.io/not-ready", effect: "NoExecute" }),
    ]);
  });
});

describe("podEvictionTime", () => {
  const tainted = node("Unknown", [
    { key: UNREACHABLE_TAINT, effect: "NoExecute", timeAdded: new Date(10_000) },
  ]);
  it("evicts after the default toleration, the pod's own tolerationSeconds, or never", () => {
    expect(podEvictionTime(pod("a", "1", true), tainted, 20_000, 60_000)).toBe(70_000);
    const short = pod("a", "1", true, {
      tolerations: [
        { key: UNREACHABLE_TAINT, operator: "Exists", effect: "NoExecute", tolerationSeconds: 5 },
      ],
    });
    expect(podEvictionTime(short, tainted, 20_000, 60_000)).toBe(15_000);
    const forever = pod("a", "1", true, { tolerations: [{ operator: "Exists" }] });
    expect(podEvictionTime(forever, tainted, 20_000, 60_000)).toBe("never");
    expect(podEvictionTime(pod("a", "1", true), node("True"), 20_000, 60_000)).toBeUndefined();
  });
});

describe("garbage collection", () => {
  const ref = (uid: string, block = false) => ({
    apiVersion: "apps/v1",
    kind: "ReplicaSet",
    name: uid,
    uid,
    controller: true,
    blockOwnerDeletion: block,
  });
  const dep = (...uids: string[]) => ({ metadata: { name: "p", ownerReferences: uids.map((u) => ref(u)) } });
  it("deletes a dependent whose owners are all gone, keeps one with an owner left (dropping the dangling ref)", () => {
    expect(dependentAction(dep("a"), new Map([["a", "absent"]]))).toEqual({
      action: "delete",
      propagation: "Background",
    });
    expect(
      dependentAction(
        dep("a", "b"),
        new Map([
          ["a", "absent"],
          ["b", "present"],
        ]),
      ),
    ).toEqual({ action: "removeOwners", uids: ["a"] });
    expect(dependentAction(dep("a"), new Map([["a", "present"]]))).toEqual({ action: "none" });
    // An owner of a kind we do not watch keeps its dependents.
    expect(dependentAction(dep("x"), new Map())).toEqual({ action: "none" });
  });
  it("foreground deletion deletes dependents first; orphan deletion drops the references", () => {
    const fg = { metadata: { uid: "a", deletionTimestamp: new Date(), finalizers: ["foregroundDeletion"] } };
    const or = { metadata: { uid: "a", deletionTimestamp: new Date(), finalizers: ["orphan"] } };
    expect(dependentAction(dep("a"), new Map([["a", ownerState(fg, true)]]))).toEqual({
      action: "delete",
      propagation: "Foreground",
    });
    expect(dependentAction(dep("a"), new Map([["a", ownerState(or, true)]]))).toEqual({
      action: "removeOwners",
      uids: ["a"],
    });
    const blocking = { metadata: { name: "p", ownerReferences: [ref("a", true)] } };
    expect(ownerFinalizerToRemove(fg, [blocking])).toBeUndefined();
    expect(ownerFinalizerToRemove(fg, [])).toBe("foregroundDeletion");
    expect(ownerFinalizerToRemove(or, [dep("a")])).toBeUndefined();
    expect(ownerFinalizerToRemove(or, [])).toBe("orphan");
  });
});

describe("allocatePodCidrs", () => {
  const n = (name: string, podCIDR?: string): V1Node => ({ metadata: { name }, spec: { podCIDR } });
  it("keeps existing assignments and gives new nodes the lowest free subnet", () => {
    const pool = cidrPool("10.244.0.0/16", 24);
    const r = allocatePodCidrs(pool, [n("b", "10.244.0.0/24"), n("a"), n("c", "10.244.2.0/24"), n("d")]);
    expect(r.assign).toEqual({ a: "10.244.1.0/24", d: "10.244.3.0/24" });
  });
  it("reports exhaustion and rejects bad pools", () => {
    const pool = cidrPool("10.0.0.0/23", 24);
    expect(allocatePodCidrs(pool, [n("a"), n("b"), n("c")])).toEqual({
      assign: { a: "10.0.0.0/24", b: "10.0.1.0/24" },
      exhausted: ["c"],
    });
    expect(() => cidrPool("10.0.0.0/24", 16)).toThrow(/between/);
    expect(() => cidrPool("banana")).toThrow(/IPv4 CIDR/);
  });
});
