import type { ResourceInfo } from "../../../api/resources.ts";
import { selectorObjectToString, type SelectorObject } from "../../../api/selectors.ts";
import { ApiError, conflict } from "../../../api/status.ts";
import type { KObject, Registry } from "../../registry.ts";
import type { FieldsWrite } from "../../registry/apply/index.ts";

/** The autoscaling/v1 Scale view of a Deployment, ReplicaSet, StatefulSet or ReplicationController. */
export function toScale(info: ResourceInfo, obj: KObject): Record<string, unknown> {
  const spec = (obj.spec ?? {}) as { replicas?: number; selector?: SelectorObject };
  const status = (obj.status ?? {}) as { replicas?: number };
  const m = obj.metadata;
  return {
    kind: "Scale",
    apiVersion: "autoscaling/v1",
    metadata: {
      name: m.name,
      namespace: m.namespace,
      uid: m.uid,
      resourceVersion: m.resourceVersion,
      creationTimestamp: m.creationTimestamp,
    },
    spec: { replicas: spec.replicas ?? 0 },
    status: {
      replicas: status.replicas ?? 0,
      // A ReplicationController's selector is a plain map of labels.
      selector: selectorObjectToString(
        info.kind === "ReplicationController"
          ? { matchLabels: spec.selector as unknown as Record<string, string> }
          : spec.selector,
      ),
    },
  };
}

/** Writes a Scale's spec.replicas into its object; answers the new Scale. */
export async function writeScale(
  registry: Registry,
  info: ResourceInfo,
  current: KObject,
  scale: KObject,
  dryRun: boolean,
  fields?: FieldsWrite,
): Promise<unknown> {
  const replicas = (scale.spec as { replicas?: unknown } | undefined)?.replicas;
  if (typeof replicas !== "number" || !Number.isInteger(replicas) || replicas < 0) {
    throw new ApiError(
      422,
      "Invalid",
      `Scale.autoscaling "${current.metadata.name}" is invalid: spec.replicas: Invalid value: ${JSON.stringify(replicas)}: must be greater than or equal to 0`,
      {
        causes: [
          {
            field: "spec.replicas",
            reason: "FieldValueInvalid",
            message: "must be greater than or equal to 0",
          },
        ],
      },
    );
  }
  const rv = scale.metadata?.resourceVersion;
  if (rv && rv !== current.metadata.resourceVersion)
    throw conflict(info.plural, current.metadata.name!, info.group);
  const next = structuredClone(current);
  (next.spec as Record<string, unknown>).replicas = replicas;
  const updated = await registry.update(info, current, next, "main", dryRun, fields);
  return toScale(info, updated);
}
