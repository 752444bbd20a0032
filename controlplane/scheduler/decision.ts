/**
 * The scheduler's decision, pure: which node a pod goes to, or why none fits. Filters as
 * kube-scheduler's default plugins (VolumeBinding's claim checks, NodeUnschedulable,
 * TaintToleration, NodeResourcesFit, NodeAffinity incl. nodeSelector, NodePorts) and scores
 * (LeastAllocated, BalancedAllocation, preferred node affinity, spreading of pods with the same
 * owner).
 */
import type {
  V1Node,
  V1NodeSelectorRequirement,
  V1NodeSelectorTerm,
  V1PersistentVolumeClaim,
  V1Pod,
  V1Taint,
  V1Toleration,
} from "@kubernetes/client-node";
import { milliCpu, parseQuantity } from "./quantity.ts";

export interface Resources {
  milliCpu: number;
  memory: number;
  pods: number;
}

/** `compute` kept per object: objects from the cache are replaced, never mutated. */
function perObject<K extends object, V>(compute: (k: K) => V): (k: K) => V {
  const cache = new WeakMap<K, V>();
  return (k) => {
    let v = cache.get(k);
    if (v === undefined) cache.set(k, (v = compute(k)));
    return v;
  };
}

/** Requests of a pod: sum over containers, at least the max of init containers (as kubelet computes). */
export const podRequests: (pod: V1Pod) => Resources = perObject(computePodRequests);

export const nodeAllocatable: (node: V1Node) => Resources = perObject(computeAllocatable);

function computePodRequests(pod: V1Pod): Resources {
  let cpu = 0;
  let mem = 0;
  for (const c of pod.spec?.containers ?? []) {
    cpu += milliCpu(c.resources?.requests?.cpu);
    mem += parseQuantity(c.resources?.requests?.memory);
  }
  for (const c of pod.spec?.initContainers ?? []) {
    cpu = Math.max(cpu, milliCpu(c.resources?.requests?.cpu));
    mem = Math.max(mem, parseQuantity(c.resources?.requests?.memory));
  }
  for (const [k, v] of Object.entries(pod.spec?.overhead ?? {})) {
    if (k === "cpu") cpu += milliCpu(v);
    if (k === "memory") mem += parseQuantity(v);
  }
  return { milliCpu: cpu, memory: mem, pods: 1 };
}

function computeAllocatable(node: V1Node): Resources {
  const a = node.status?.allocatable ?? node.status?.capacity ?? {};
  return {
    milliCpu: milliCpu(a.cpu),
    memory: parseQuantity(a.memory),
    pods: a.pods === undefined ? 110 : parseQuantity(a.pods),
  };
}

export function isNodeReady(node: V1Node): boolean {
  return (node.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

/** A pod still holds its node's resources until it is terminal. */
export function podHoldsResources(pod: V1Pod): boolean {
  const phase = pod.status?.phase;
  return !!pod.spec?.nodeName && phase !== "Succeeded" && phase !== "Failed";
}

export function tolerates(t: V1Toleration, taint: V1Taint): boolean {
  if (t.effect && t.effect !== taint.effect) return false;
  if (t.operator === "Exists") return !t.key || t.key === taint.key;
  return t.key === taint.key && (t.value ?? "") === (taint.value ?? "");
}

export function untoleratedTaint(pod: V1Pod, node: V1Node): V1Taint | undefined {
  return (node.spec?.taints ?? []).find(
    (taint) =>
      (taint.effect === "NoSchedule" || taint.effect === "NoExecute") &&
      !(pod.spec?.tolerations ?? []).some((t) => tolerates(t, taint)),
  );
}

const isInteger = (v: string | undefined): boolean => v !== undefined && /^[+-]?\d+$/.test(v);

/**
 * One matchExpressions requirement against the node's labels (a label selector requirement, as
 * upstream's nodeSelectorRequirementsAsSelector). A malformed one (In without values, Exists with
 * values, Gt with a non-integer) is undefined: upstream fails the whole term then.
 */
function matchesRequirement(
  req: V1NodeSelectorRequirement,
  labels: Record<string, string>,
): boolean | undefined {
  const has = Object.prototype.hasOwnProperty.call(labels, req.key);
  const v = labels[req.key];
  const values = req.values ?? [];
  switch (req.operator) {
    case "In":
      return values.length === 0 ? undefined : has && values.includes(v!);
    case "NotIn":
      return values.length === 0 ? undefined : !has || !values.includes(v!);
    case "Exists":
      return values.length > 0 ? undefined : has;
    case "DoesNotExist":
      return values.length > 0 ? undefined : !has;
    case "Gt":
    case "Lt": {
      if (values.length !== 1 || !isInteger(values[0])) return undefined;
      if (!has || !isInteger(v)) return false;
      return req.operator === "Gt" ? Number(v) > Number(values[0]) : Number(v) < Number(values[0]);
    }
    default:
      return undefined;
  }
}

/**
 * One matchFields requirement (a field selector, as upstream's
 * nodeSelectorRequirementsAsFieldSelector): In or NotIn with exactly one value. `metadata.name` is
 * the only node field there is; any other key reads as "". Malformed: undefined.
 */
function matchesFieldRequirement(req: V1NodeSelectorRequirement, node: V1Node): boolean | undefined {
  const values = req.values ?? [];
  if (values.length !== 1) return undefined;
  const v = req.key === "metadata.name" ? (node.metadata?.name ?? "") : "";
  if (req.operator === "In") return v === values[0];
  if (req.operator === "NotIn") return v !== values[0];
  return undefined;
}

/**
 * A nodeSelectorTerm: its matchExpressions (labels) and matchFields (the node's name) all hold.
 * A term with neither selects nothing; a malformed requirement makes the term match nothing.
 */
export function matchesNodeSelectorTerm(term: V1NodeSelectorTerm, node: V1Node): boolean {
  const exprs = term.matchExpressions ?? [];
  const fields = term.matchFields ?? [];
  if (exprs.length === 0 && fields.length === 0) return false;
  const labels = node.metadata?.labels ?? {};
  for (const r of exprs) if (matchesRequirement(r, labels) !== true) return false;
  for (const r of fields) if (matchesFieldRequirement(r, node) !== true) return false;
  return true;
}

export function matchesNodeSelectorAndAffinity(pod: V1Pod, node: V1Node): boolean {
  const labels = node.metadata?.labels ?? {};
  for (const [k, v] of Object.entries(pod.spec?.nodeSelector ?? {})) if (labels[k] !== v) return false;
  const required = pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
  if (!required) return true;
  // Terms are ORed, the requirements within one term ANDed.
  return (required.nodeSelectorTerms ?? []).some((term) => matchesNodeSelectorTerm(term, node));
}

/** Sum of the weights of the pod's preferred node affinity terms the node matches (NodeAffinity's Score). */
export function preferredAffinityWeight(pod: V1Pod, node: V1Node): number {
  let sum = 0;
  for (const t of pod.spec?.affinity?.nodeAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [])
    if (t.weight && t.preference && matchesNodeSelectorTerm(t.preference, node)) sum += t.weight;
  return sum;
}

/** What the scheduler knows of a claim; undefined while it does not exist. */
export type ClaimLookup = (namespace: string, name: string) => V1PersistentVolumeClaim | undefined;

/** The PersistentVolumeClaims the pod uses (a generic ephemeral volume's claim is `<pod>-<volume>`). */
export function podClaims(pod: V1Pod): { name: string; ephemeral: boolean }[] {
  const out: { name: string; ephemeral: boolean }[] = [];
  for (const v of pod.spec?.volumes ?? []) {
    if (v.persistentVolumeClaim?.claimName)
      out.push({ name: v.persistentVolumeClaim.claimName, ephemeral: false });
    else if (v.ephemeral) out.push({ name: `${pod.metadata?.name ?? ""}-${v.name}`, ephemeral: true });
  }
  return out;
}

/**
 * Why the pod's claims keep it off every node, in VolumeBinding's PreFilter words, or undefined:
 * a claim must exist, not be lost or being deleted, and be Bound.
 */
export function claimsBlocker(pod: V1Pod, claims: ClaimLookup): string | undefined {
  const ns = pod.metadata?.namespace ?? "default";
  let unbound = false;
  for (const { name, ephemeral } of podClaims(pod)) {
    const pvc = claims(ns, name);
    if (!pvc)
      return ephemeral
        ? `waiting for ephemeral volume controller to create the persistentvolumeclaim "${name}"`
        : `persistentvolumeclaim "${name}" not found`;
    if (pvc.status?.phase === "Lost")
      return `persistentvolumeclaim "${name}" bound to non-existent persistentvolume "${pvc.spec?.volumeName ?? ""}"`;
    if (pvc.metadata?.deletionTimestamp) return `persistentvolumeclaim "${name}" is being deleted`;
    if (pvc.status?.phase !== "Bound") unbound = true;
  }
  return unbound ? "pod has unbound immediate PersistentVolumeClaims" : undefined;
}

function hostPorts(pod: V1Pod): string[] {
  const out: string[] = [];
  for (const c of pod.spec?.containers ?? [])
    for (const p of c.ports ?? [])
      if (p.hostPort) out.push(`${p.protocol ?? "TCP"}/${p.hostIP ?? "0.0.0.0"}/${p.hostPort}`);
  return out;
}

function portsConflict(a: string, b: string): boolean {
  const [pa, ia, na] = a.split("/");
  const [pb, ib, nb] = b.split("/");
  return pa === pb && na === nb && (ia === ib || ia === "0.0.0.0" || ib === "0.0.0.0");
}

/** Pods per node name and the resources they request, built once per scheduling cycle. */
export interface NodeUsage {
  requested: Resources;
  hostPorts: string[];
  /** Owner UID → count, for spreading. */
  owners: Map<string, number>;
}

export function usageByNode(pods: Iterable<V1Pod>): Map<string, NodeUsage> {
  const m = new Map<string, NodeUsage>();
  for (const p of pods) addPodToUsage(m, p);
  return m;
}

export function addPodToUsage(m: Map<string, NodeUsage>, p: V1Pod): void {
  if (!podHoldsResources(p)) return;
  const node = p.spec!.nodeName!;
  let u = m.get(node);
  if (!u)
    m.set(node, (u = { requested: { milliCpu: 0, memory: 0, pods: 0 }, hostPorts: [], owners: new Map() }));
  const r = podRequests(p);
  u.requested.milliCpu += r.milliCpu;
  u.requested.memory += r.memory;
  u.requested.pods += 1;
  u.hostPorts.push(...hostPorts(p));
  const owner = controllerUid(p);
  if (owner) u.owners.set(owner, (u.owners.get(owner) ?? 0) + 1);
}

export function controllerUid(p: V1Pod): string | undefined {
  return p.metadata?.ownerReferences?.find((o) => o.controller)?.uid;
}

/** Why a node cannot take the pod, in kube-scheduler's words; empty when it can. */
export function filterNode(pod: V1Pod, node: V1Node, usage: NodeUsage | undefined): string[] {
  const reasons: string[] = [];
  if (!isNodeReady(node)) reasons.push("node(s) were not ready");
  if (
    node.spec?.unschedulable &&
    !(pod.spec?.tolerations ?? []).some((t) => t.key === "node.kubernetes.io/unschedulable")
  )
    reasons.push("node(s) were unschedulable");
  const taint = untoleratedTaint(pod, node);
  if (taint) reasons.push(`node(s) had untolerated taint {${taint.key}: ${taint.value ?? ""}}`);
  if (!matchesNodeSelectorAndAffinity(pod, node))
    reasons.push("node(s) didn't match Pod's node affinity/selector");
  const alloc = nodeAllocatable(node);
  const req = podRequests(pod);
  const used = usage?.requested ?? { milliCpu: 0, memory: 0, pods: 0 };
  if (used.pods + 1 > alloc.pods) reasons.push("Too many pods");
  if (req.milliCpu > 0 && used.milliCpu + req.milliCpu > alloc.milliCpu) reasons.push("Insufficient cpu");
  if (req.memory > 0 && used.memory + req.memory > alloc.memory) reasons.push("Insufficient memory");
  const mine = hostPorts(pod);
  if (mine.some((a) => (usage?.hostPorts ?? []).some((b) => portsConflict(a, b))))
    reasons.push("node(s) didn't have free ports for the requested pod ports");
  return reasons;
}

/** Scheduler defaults for pods that request nothing, so they still spread by "size". */
const DEFAULT_MILLI_CPU = 100;
const DEFAULT_MEMORY = 200 * 1024 * 1024;

/** Score 0–100 per plugin, summed: least allocated, balanced allocation, owner spreading (weight 2). */
export function scoreNode(pod: V1Pod, node: V1Node, usage: NodeUsage | undefined): number {
  const alloc = nodeAllocatable(node);
  const req = podRequests(pod);
  const used = usage?.requested ?? { milliCpu: 0, memory: 0, pods: 0 };
  const cpu = used.milliCpu + (req.milliCpu || DEFAULT_MILLI_CPU);
  const mem = used.memory + (req.memory || DEFAULT_MEMORY);
  const cpuFrac = alloc.milliCpu > 0 ? Math.min(1, cpu / alloc.milliCpu) : 1;
  const memFrac = alloc.memory > 0 ? Math.min(1, mem / alloc.memory) : 1;
  const least = ((1 - cpuFrac) * 100 + (1 - memFrac) * 100) / 2;
  const balanced = (1 - Math.abs(cpuFrac - memFrac)) * 100;
  const owner = controllerUid(pod);
  const same = owner ? (usage?.owners.get(owner) ?? 0) : 0;
  // Fewer pods of the same owner → higher; 1/(1+n) keeps it monotonic without knowing the maximum.
  const spread = owner ? 100 / (1 + same) : 100;
  return least + balanced + 2 * spread;
}

export type ScheduleDecision =
  { node: string; score: number } | { reasons: Record<string, string[]>; message: string };

/** Weight of the NodeAffinity score plugin in kube-scheduler's default profile. */
const NODE_AFFINITY_WEIGHT = 2;

/**
 * Picks the best feasible node for the pod; ties go to the lexically first name so that the result
 * is deterministic. Without a fit, says per node why not, with kube-scheduler's summary message.
 * With `claims`, a pod whose PersistentVolumeClaims are not usable fits nowhere.
 */
export function scheduleDecision(
  pod: V1Pod,
  nodes: V1Node[],
  usage: Map<string, NodeUsage>,
  opts: { claims?: ClaimLookup } = {},
): ScheduleDecision {
  const reasons: Record<string, string[]> = {};
  const blocker = opts.claims && claimsBlocker(pod, opts.claims);
  if (blocker) {
    for (const node of nodes) reasons[node.metadata?.name ?? ""] = [blocker];
    // A PreFilter rejection is named once, not counted per node.
    return { reasons, message: `0/${nodes.length} nodes are available: ${blocker}.` };
  }
  const feasible: { name: string; score: number; affinity: number }[] = [];
  for (const node of nodes) {
    const name = node.metadata?.name ?? "";
    if (node.metadata?.deletionTimestamp) {
      reasons[name] = ["node(s) were being deleted"];
      continue;
    }
    const u = usage.get(name);
    const r = filterNode(pod, node, u);
    if (r.length > 0) {
      reasons[name] = r;
      continue;
    }
    feasible.push({ name, score: scoreNode(pod, node, u), affinity: preferredAffinityWeight(pod, node) });
  }
  // NodeAffinity's score is normalized to 0–100 over the feasible nodes.
  const maxAffinity = Math.max(0, ...feasible.map((f) => f.affinity));
  let best: { node: string; score: number } | undefined;
  for (const f of feasible) {
    const score = f.score + (maxAffinity > 0 ? (NODE_AFFINITY_WEIGHT * 100 * f.affinity) / maxAffinity : 0);
    if (!best || score > best.score || (score === best.score && f.name < best.node))
      best = { node: f.name, score };
  }
  if (best) return best;
  return { reasons, message: failureMessage(nodes.length, reasons) };
}

/** "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) were not ready." */
export function failureMessage(total: number, reasons: Record<string, string[]>): string {
  const counts = new Map<string, number>();
  for (const rs of Object.values(reasons)) for (const r of rs) counts.set(r, (counts.get(r) ?? 0) + 1);
  const parts = [...counts].map(([r, n]) => `${n} ${r}`).sort();
  return `0/${total} nodes are available${parts.length ? ": " + parts.join(", ") : ""}.`;
}

/** Pods this scheduler should place: no node yet, not being deleted, our schedulerName, not terminal. */
export function needsScheduling(pod: V1Pod, schedulerName = "default-scheduler"): boolean {
  return (
    !pod.spec?.nodeName &&
    !pod.metadata?.deletionTimestamp &&
    (pod.spec?.schedulerName ?? "default-scheduler") === schedulerName &&
    pod.status?.phase !== "Succeeded" &&
    pod.status?.phase !== "Failed"
  );
}
