import { ApiError } from "../../../api/status.ts";
import type { KObject, Registry } from "../../registry.ts";

/**
 * pods/binding: the scheduler's write of spec.nodeName. The registry sets it once, marks the pod
 * PodScheduled and validates it like every write (a node name must be a DNS subdomain).
 */
export async function bind(
  registry: Registry,
  namespace: string,
  name: string,
  binding: KObject,
): Promise<void> {
  const target = binding.target as { name?: unknown; kind?: string } | undefined;
  if (typeof target?.name !== "string" || target.name === "")
    throw new ApiError(422, "Invalid", "binding.target.name is required");
  await registry.bind(namespace, name, target.name);
}
