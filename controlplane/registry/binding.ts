import { ApiError } from "../../api/status.ts";
import { timestamp, type KObject } from "./types.ts";

/**
 * The binding subresource's change to a pod: sets a pending pod's spec.nodeName once, with its
 * PodScheduled condition (a pod already assigned or being deleted is a conflict).
 */
export function bindPod(pod: KObject, name: string, nodeName: string): KObject {
  const spec = (pod.spec ??= {}) as Record<string, unknown>;
  if (spec.nodeName) {
    throw new ApiError(
      409,
      "Conflict",
      `Operation cannot be fulfilled on pods/binding "${name}": pod ${name} is already assigned to node "${String(spec.nodeName)}"`,
    );
  }
  if (pod.metadata.deletionTimestamp)
    throw new ApiError(409, "Conflict", `pod ${name} is being deleted, cannot be assigned to a host`);
  spec.nodeName = nodeName;
  const status = (pod.status ??= {}) as Record<string, unknown>;
  const conditions = Array.isArray(status.conditions) ? (status.conditions as Record<string, unknown>[]) : [];
  status.conditions = [
    ...conditions.filter((c) => c.type !== "PodScheduled"),
    { type: "PodScheduled", status: "True", lastProbeTime: null, lastTransitionTime: timestamp() },
  ];
  return pod;
}
