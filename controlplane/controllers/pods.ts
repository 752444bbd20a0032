/** Pod facts every controller asks about. */
import type { V1Pod } from "@kubernetes/client-node";

export function isPodReady(p: V1Pod): boolean {
  return (p.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

/** Ready for at least minReadySeconds at `nowMs`. */
export function isPodAvailable(p: V1Pod, minReadySeconds: number, nowMs: number): boolean {
  const c = (p.status?.conditions ?? []).find((c) => c.type === "Ready" && c.status === "True");
  if (!c) return false;
  if (minReadySeconds <= 0) return true;
  const since = c.lastTransitionTime ? new Date(c.lastTransitionTime).getTime() : 0;
  return since + minReadySeconds * 1000 <= nowMs;
}

/** Counts toward replicas: not terminal and not being deleted. */
export function isPodActive(p: V1Pod): boolean {
  return !p.metadata?.deletionTimestamp && p.status?.phase !== "Succeeded" && p.status?.phase !== "Failed";
}
