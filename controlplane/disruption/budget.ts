/**
 * Disruption budget arithmetic, pure, shared by the disruption controller (which writes a
 * PodDisruptionBudget's status) and the eviction subresource (which spends it): upstream's
 * pkg/controller/disruption getExpectedPodCount / countHealthyPods / updatePdbStatus.
 */
import type { V1Pod, V1PodDisruptionBudget } from "@kubernetes/client-node";

/** An evicted pod stays out of currentHealthy this long while its deletion is under way (upstream's DeletionTimeout). */
export const DELETION_TIMEOUT_MS = 2 * 60_000;

export function podReady(pod: V1Pod): boolean {
  return (pod.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

/** Ready, not terminating, and not evicted within DELETION_TIMEOUT_MS. */
export function countHealthy(
  pods: V1Pod[],
  disrupted: Record<string, unknown> | undefined,
  now: number,
): number {
  let n = 0;
  for (const p of pods) {
    if (p.metadata?.deletionTimestamp) continue;
    const at = disrupted?.[p.metadata?.name ?? ""];
    if (typeof at === "string" && Date.parse(at) + DELETION_TIMEOUT_MS > now) continue;
    if (podReady(p)) n++;
  }
  return n;
}

/** "30%" of n, rounded up as upstream's GetScaledValueFromIntOrPercent(…, true). */
export function scaled(v: number | string, n: number): number | undefined {
  if (typeof v === "number") return v;
  const m = /^(\d+)%$/.exec(v);
  return m ? Math.ceil((Number(m[1]) * n) / 100) : undefined;
}

/** Whether the budget needs the pods' controllers' scale (maxUnavailable, or minAvailable as a percentage). */
export function needsScale(pdb: V1PodDisruptionBudget): boolean {
  const s = pdb.spec ?? {};
  return s.maxUnavailable !== undefined || typeof s.minAvailable === "string";
}

export interface BudgetStatus {
  expectedPods: number;
  desiredHealthy: number;
  currentHealthy: number;
  disruptionsAllowed: number;
}

/** The status numbers; `expectedFromScale` is the sum of the controllers' replicas when needsScale. */
export function budgetStatus(
  pdb: V1PodDisruptionBudget,
  pods: V1Pod[],
  expectedFromScale: number | undefined,
  now: number,
): BudgetStatus {
  const spec = pdb.spec ?? {};
  const currentHealthy = countHealthy(pods, pdb.status?.disruptedPods as Record<string, unknown>, now);
  let expectedPods = pods.length;
  let desiredHealthy = 0;
  if (spec.maxUnavailable !== undefined) {
    expectedPods = expectedFromScale ?? 0;
    desiredHealthy = Math.max(0, expectedPods - (scaled(spec.maxUnavailable, expectedPods) ?? 0));
  } else if (typeof spec.minAvailable === "number") {
    desiredHealthy = spec.minAvailable;
  } else if (typeof spec.minAvailable === "string") {
    expectedPods = expectedFromScale ?? 0;
    desiredHealthy = scaled(spec.minAvailable, expectedPods) ?? 0;
  }
  const disruptionsAllowed = expectedPods <= 0 ? 0 : Math.max(0, currentHealthy - desiredHealthy);
  return { expectedPods, desiredHealthy, currentHealthy, disruptionsAllowed };
}

/** The DisruptionAllowed condition upstream sets (reason SufficientPods / InsufficientPods / SyncFailed). */
export function disruptionCondition(
  allowed: number,
  previous: { type?: string; status?: string; lastTransitionTime?: unknown }[] | undefined,
  generation: number | undefined,
  failure?: string,
): Record<string, unknown> {
  const status = failure === undefined && allowed > 0 ? "True" : "False";
  const reason = failure !== undefined ? "SyncFailed" : allowed > 0 ? "SufficientPods" : "InsufficientPods";
  const old = previous?.find((c) => c.type === "DisruptionAllowed");
  return {
    type: "DisruptionAllowed",
    status,
    reason,
    message: failure ?? "",
    observedGeneration: generation,
    lastTransitionTime:
      old?.status === status && old.lastTransitionTime
        ? old.lastTransitionTime
        : new Date().toISOString().replace(/\.\d+Z$/, "Z"),
  };
}
