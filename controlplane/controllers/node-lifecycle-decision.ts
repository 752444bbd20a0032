/**
 * The node lifecycle controller's decisions, pure. A node is healthy while its Lease in
 * kube-node-lease (or its Ready condition heartbeat) keeps changing; "when it last changed" is
 * measured on this process's clock, so clock skew between machines does not matter.
 */
import type { V1Node, V1NodeCondition, V1Pod, V1Taint } from "@kubernetes/client-node";

export const UNREACHABLE_TAINT = "node.kubernetes.io/unreachable";
export const NOT_READY_TAINT = "node.kubernetes.io/not-ready";

export interface NodeLifecycleOptions {
  /** No heartbeat for this long → Ready=Unknown (default 40 s). */
  gracePeriodMs: number;
  /** Pods without their own toleration for the NoExecute taint are evicted after this (default 60 s). */
  podEvictionTimeoutMs: number;
}
export const NODE_LIFECYCLE_DEFAULTS: NodeLifecycleOptions = {
  gracePeriodMs: 40_000,
  podEvictionTimeoutMs: 60_000,
};

export interface NodeChange {
  /** Ready condition to write (status), if it must change. */
  readyCondition?: V1NodeCondition;
  /** Taints to write (spec), if they must change. */
  taints?: V1Taint[];
}

function readyCondition(node: V1Node): V1NodeCondition | undefined {
  return node.status?.conditions?.find((c) => c.type === "Ready");
}

/**
 * What to change on a node, given when its heartbeat was last seen to change (local ms). A silent
 * node gets Ready=Unknown and the unreachable NoExecute taint; a node reporting Ready=False gets
 * the not-ready taint; a Ready node loses both.
 */
export function nodeLifecycleDecision(
  node: V1Node,
  lastHeartbeatMs: number,
  nowMs: number,
  opts: NodeLifecycleOptions,
): NodeChange {
  const change: NodeChange = {};
  const ready = readyCondition(node);
  const silent = nowMs - lastHeartbeatMs > opts.gracePeriodMs;
  let status = ready?.status ?? "Unknown";
  const now = new Date(nowMs).toISOString().replace(/\.\d{3}Z$/, "Z");
  if (silent && status !== "Unknown") {
    change.readyCondition = {
      type: "Ready",
      status: "Unknown",
      reason: "NodeStatusUnknown",
      message: "Node stopped posting node status (its lease was not renewed).",
      lastHeartbeatTime: ready?.lastHeartbeatTime,
      lastTransitionTime: now as unknown as Date,
    };
    status = "Unknown";
  }
  // A new node that has not reported yet is given its grace period before it counts as unreachable.
  if (!ready && !silent) return change;
  const want = status === "Unknown" ? UNREACHABLE_TAINT : status === "False" ? NOT_READY_TAINT : undefined;
  const taints = node.spec?.taints ?? [];
  const kept = taints.filter(
    (t) =>
      !(
        (t.key === UNREACHABLE_TAINT || t.key === NOT_READY_TAINT) &&
        t.effect === "NoExecute" &&
        t.key !== want
      ),
  );
  if (want && !kept.some((t) => t.key === want && t.effect === "NoExecute"))
    kept.push({ key: want, effect: "NoExecute", timeAdded: now as unknown as Date });
  if (kept.length !== taints.length || kept.some((t, i) => t !== taints[i])) change.taints = kept;
  return change;
}

/**
 * When a pod on a node with NoExecute taints must be evicted: "never" when it tolerates them all
 * without limit, otherwise taint time + the shortest toleration (the default for taints it does
 * not tolerate explicitly). undefined when the node has no NoExecute taint.
 */
export function podEvictionTime(
  pod: V1Pod,
  node: V1Node,
  nowMs: number,
  defaultTolerationMs: number,
): number | "never" | undefined {
  const taints = (node.spec?.taints ?? []).filter((t) => t.effect === "NoExecute");
  if (taints.length === 0) return undefined;
  let at: number | "never" = "never";
  for (const taint of taints) {
    const added = taint.timeAdded ? new Date(taint.timeAdded).getTime() : nowMs;
    const tol = (pod.spec?.tolerations ?? []).find(
      (t) =>
        (!t.effect || t.effect === "NoExecute") &&
        (t.operator === "Exists"
          ? !t.key || t.key === taint.key
          : t.key === taint.key && (t.value ?? "") === (taint.value ?? "")),
    );
    let limit: number | "never";
    if (!tol)
      limit = taint.key === UNREACHABLE_TAINT || taint.key === NOT_READY_TAINT ? defaultTolerationMs : 0;
    else
      limit =
        tol.tolerationSeconds === undefined || tol.tolerationSeconds === null
          ? "never"
          : Math.max(0, tol.tolerationSeconds) * 1000;
    if (limit === "never") continue;
    const t = added + limit;
    at = at === "never" ? t : Math.min(at, t);
  }
  return at;
}

/** Pods on a node that has become Unknown are no longer Ready (so Services drop them). */
export function podReadyToClear(pod: V1Pod): boolean {
  return (pod.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}
