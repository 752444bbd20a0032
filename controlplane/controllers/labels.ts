/** LabelSelector objects (matchLabels + matchExpressions) as in ReplicaSet/Deployment specs. */
import type { V1LabelSelector, V1OwnerReference } from "@kubernetes/client-node";

export function selectorMatches(
  sel: V1LabelSelector | undefined,
  labels: Record<string, string> | undefined,
): boolean {
  // An empty or missing selector matches nothing for controllers (as in apps/v1 validation).
  if (!sel || (Object.keys(sel.matchLabels ?? {}).length === 0 && (sel.matchExpressions ?? []).length === 0))
    return false;
  const l = labels ?? {};
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (l[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(l, e.key);
    const values = e.values ?? [];
    const ok =
      e.operator === "In"
        ? has && values.includes(l[e.key]!)
        : e.operator === "NotIn"
          ? !has || !values.includes(l[e.key]!)
          : e.operator === "Exists"
            ? has
            : e.operator === "DoesNotExist"
              ? !has
              : false;
    if (!ok) return false;
  }
  return true;
}

export function controllerRef(obj: {
  metadata?: { ownerReferences?: V1OwnerReference[] };
}): V1OwnerReference | undefined {
  return obj.metadata?.ownerReferences?.find((o) => o.controller === true);
}

export function ownerRefFor(
  owner: { metadata?: { name?: string; uid?: string } },
  apiVersion: string,
  kind: string,
): V1OwnerReference {
  return {
    apiVersion,
    kind,
    name: owner.metadata?.name ?? "",
    uid: owner.metadata?.uid ?? "",
    controller: true,
    blockOwnerDeletion: true,
  };
}
