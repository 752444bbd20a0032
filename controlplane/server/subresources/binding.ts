import { findResource } from "../../../api/resources.ts";
import { ApiError, conflict } from "../../../api/status.ts";
import type { KObject, Registry } from "../../registry.ts";
import { show } from "../body.ts";
import { guaranteedUpdate } from "../guaranteed-update.ts";

/** pods/binding: sets spec.nodeName once (the scheduler's write) and marks the pod PodScheduled. */
export async function bind(
  registry: Registry,
  namespace: string,
  name: string,
  binding: KObject,
): Promise<void> {
  const target = binding.target as { name?: unknown; kind?: string } | undefined;
  if (typeof target?.name !== "string" || target.name === "")
    throw new ApiError(422, "Invalid", "binding.target.name is required");
  const nodeName = target.name;
  const podInfo = findResource("", "v1", "pods")!;
  const read = async (): Promise<KObject> => {
    const pod = await registry.get(podInfo, namespace, name);
    const spec = (pod.spec ?? {}) as Record<string, unknown>;
    if (spec.nodeName) {
      throw new ApiError(
        409,
        "Conflict",
        `Operation cannot be fulfilled on pods/binding "${name}": pod ${name} is already assigned to node ${show(spec.nodeName)}`,
      );
    }
    if (pod.metadata.deletionTimestamp)
      throw new ApiError(409, "Conflict", `pod ${name} is being deleted, cannot be assigned to a host`);
    return pod;
  };
  const write = async (pod: KObject): Promise<void> => {
    const next = structuredClone(pod);
    (next.spec as Record<string, unknown>).nodeName = nodeName;
    const status = (next.status ??= {}) as Record<string, unknown>;
    const conditions = ((status.conditions as Record<string, unknown>[] | undefined) ?? []).filter(
      (c) => c.type !== "PodScheduled",
    );
    conditions.push({
      type: "PodScheduled",
      status: "True",
      lastProbeTime: null,
      lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    });
    status.conditions = conditions;
    // Binding writes spec.nodeName, which a plain pod update may not change: write directly.
    await registry.store.update(
      `/registry/pods/${namespace}/${name}`,
      { ...next, metadata: { ...next.metadata, resourceVersion: undefined } },
      Number(pod.metadata.resourceVersion),
    );
  };
  await guaranteedUpdate(read, write, { retry: true, attempts: 5, exhausted: () => conflict("pods", name) });
}
