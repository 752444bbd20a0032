import type { V1StatusCause } from "@kubernetes/client-node";
import { validateWorkloadSpec, validateWorkloadUpdate } from "./validation/apps.ts";
import { validateCore, validateCoreUpdate } from "./validation/core.ts";
import { FieldPath } from "./validation/field.ts";
import { validateObjectMeta } from "./validation/meta.ts";
import {
  nameIsDns1035Label,
  nameIsDnsLabel,
  nameIsDnsSubdomain,
  type NameCheck,
} from "./validation/names.ts";
import { isValidPathSegmentName, validateRbac, validateRbacUpdate } from "./validation/rbac.ts";
import { validateTypes } from "./validation/types.ts";
import { validateWorkload, validateWorkloadKindUpdate, WORKLOAD_KINDS } from "./validation/workloads.ts";

/**
 * Validation of the served kinds, as kube-apiserver does it: object meta (names, labels,
 * annotations, finalizers, owner references), the JSON types of every modelled field, then the
 * kind's own rules. Each problem becomes one cause of a 422 Invalid Status.
 */

type Obj = Record<string, unknown>;

/** How each kind's metadata.name is checked (Namespaces are labels, Services DNS-1035 labels). */
const NAME_CHECKS: Record<string, NameCheck> = {
  Namespace: nameIsDnsLabel,
  Service: nameIsDns1035Label,
  Role: isValidPathSegmentName,
  ClusterRole: isValidPathSegmentName,
  RoleBinding: isValidPathSegmentName,
  ClusterRoleBinding: isValidPathSegmentName,
};
const RBAC_KINDS = new Set(["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"]);

/** All problems with an object about to be stored (after defaulting). */
export function validateObject(kind: string, o: Obj, namespaced: boolean): V1StatusCause[] {
  const causes = validateObjectMeta(o.metadata, {
    namespaced,
    name: NAME_CHECKS[kind] ?? nameIsDnsSubdomain,
  });
  const types = validateTypes(kind, o, FieldPath.root());
  // The kind's rules read typed values; a wrong type is the one thing to say (as Go's decoder would).
  if (types.length) return [...causes, ...types];
  if (kind === "Deployment" || kind === "ReplicaSet") validateWorkloadSpec(kind, o.spec, causes);
  else if (WORKLOAD_KINDS.has(kind)) validateWorkload(kind, o, causes);
  else if (RBAC_KINDS.has(kind)) validateRbac(kind, o, causes);
  else validateCore(kind, o, causes);
  return causes;
}

/** All problems with replacing `old` by `next` (validateObject(next) plus the update-only rules). */
export function validateObjectUpdate(
  kind: string,
  next: Obj,
  old: Obj,
  namespaced: boolean,
): V1StatusCause[] {
  const causes = validateObject(kind, next, namespaced);
  if (kind === "Deployment" || kind === "ReplicaSet") validateWorkloadUpdate(next, old, causes);
  else if (WORKLOAD_KINDS.has(kind)) validateWorkloadKindUpdate(kind, next, old, causes);
  else if (RBAC_KINDS.has(kind)) validateRbacUpdate(kind, next, old, causes);
  else validateCoreUpdate(kind, next, old, causes);
  return causes;
}
