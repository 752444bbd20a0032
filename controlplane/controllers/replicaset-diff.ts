/** The ReplicaSet controller's decision, pure. */
import type { V1Pod, V1ReplicaSet, V1ReplicaSetStatus } from "@kubernetes/client-node";
import { controllerRef, selectorMatches } from "./labels.ts";
import { isPodActive, isPodAvailable, isPodReady } from "./pods.ts";

export interface ReplicaSetDiff {
  /** Orphans matching the selector, to take over (add our controller ownerReference). */
  adopt: V1Pod[];
  /** Owned pods that no longer match the selector, to let go (remove our ownerReference). */
  release: V1Pod[];
  /** How many pods to create from the template. */
  create: number;
  /** Pods to delete, worst first. */
  delete: V1Pod[];
  status: V1ReplicaSetStatus;
}

/** Lower = delete first: unscheduled, pending, not ready, ready for a shorter time, more restarts, newer. */
export function deletionRank(a: V1Pod, b: V1Pod): number {
  const scheduled = (p: V1Pod) => (p.spec?.nodeName ? 1 : 0);
  const phase = (p: V1Pod) => ({ Pending: 0, Unknown: 1, Running: 2 })[p.status?.phase ?? "Pending"] ?? 0;
  const ready = (p: V1Pod) => (isPodReady(p) ? 1 : 0);
  const restarts = (p: V1Pod) =>
    (p.status?.containerStatuses ?? []).reduce((s, c) => s + (c.restartCount ?? 0), 0);
  const created = (p: V1Pod) =>
    p.metadata?.creationTimestamp ? new Date(p.metadata.creationTimestamp).getTime() : 0;
  return (
    scheduled(a) - scheduled(b) ||
    phase(a) - phase(b) ||
    ready(a) - ready(b) ||
    restarts(b) - restarts(a) ||
    created(b) - created(a) ||
    (a.metadata?.name ?? "").localeCompare(b.metadata?.name ?? "")
  );
}

/**
 * Given the ReplicaSet and every pod in its namespace, what to do now. Pods owned by another
 * controller are never touched; a ReplicaSet being deleted adopts nothing.
 */
export function replicaSetDiff(rs: V1ReplicaSet, podsInNamespace: V1Pod[], nowMs: number): ReplicaSetDiff {
  const uid = rs.metadata?.uid;
  const sel = rs.spec?.selector;
  const adopt: V1Pod[] = [];
  const release: V1Pod[] = [];
  const owned: V1Pod[] = [];
  for (const p of podsInNamespace) {
    const ref = controllerRef(p);
    const matches = selectorMatches(sel, p.metadata?.labels);
    if (ref) {
      if (ref.uid !== uid) continue;
      if (matches) owned.push(p);
      else if (!p.metadata?.deletionTimestamp) release.push(p);
    } else if (matches && isPodActive(p) && !rs.metadata?.deletionTimestamp) {
      adopt.push(p);
      owned.push(p);
    }
  }
  const active = owned.filter(isPodActive);
  const want = rs.metadata?.deletionTimestamp ? active.length : (rs.spec?.replicas ?? 1);
  const diff = want - active.length;
  const minReady = rs.spec?.minReadySeconds ?? 0;
  const status: V1ReplicaSetStatus = {
    replicas: active.length,
    fullyLabeledReplicas: active.filter((p) =>
      Object.entries(rs.spec?.template?.metadata?.labels ?? {}).every(
        ([k, v]) => p.metadata?.labels?.[k] === v,
      ),
    ).length,
    readyReplicas: active.filter(isPodReady).length,
    availableReplicas: active.filter((p) => isPodAvailable(p, minReady, nowMs)).length,
    observedGeneration: rs.metadata?.generation,
  };
  return {
    adopt,
    release,
    create: Math.max(0, diff),
    delete: diff < 0 ? [...active].sort(deletionRank).slice(0, -diff) : [],
    status,
  };
}
