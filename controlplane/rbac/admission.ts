/**
 * Escalation prevention on every write of a Role, ClusterRole, RoleBinding or ClusterRoleBinding
 * (create, update, patch, apply), with upstream's 403 texts. system:masters and the control-plane
 * users write freely, as upstream's EscalationAllowed.
 */
import type { ResourceInfo } from "../../api/resources.ts";
import {
  authorize,
  forbidden,
  isPrivileged,
  type Attributes,
  type NodeGraph,
  type UserInfo,
} from "../authz.ts";
import type { KObject } from "../registry.ts";
import { CLUSTER_ROLES, RBAC_GROUP, ROLES, type RbacAuthorizer } from "./authorizer.ts";
import { escalationMessage, FULL_AUTHORITY, uncovered } from "./escalation.ts";
import type { PolicyRule, RoleRef } from "./rules.ts";

export async function admitRbacWrite(
  user: UserInfo,
  info: ResourceInfo,
  namespace: string | undefined,
  obj: KObject,
  graph: NodeGraph,
  rbac: RbacAuthorizer,
): Promise<void> {
  if (info.group !== RBAC_GROUP || isPrivileged(user)) return;
  const name = typeof obj.metadata?.name === "string" ? obj.metadata.name : "";
  const attrs: Attributes = {
    verb: "create",
    info,
    ...(namespace ? { namespace } : {}),
    ...(name ? { name } : {}),
  };
  const allowedTo = async (verb: string, on: ResourceInfo, onName: string): Promise<boolean> =>
    (await authorize(user, { verb, info: on, ...(namespace ? { namespace } : {}), name: onName }, graph))
      .allowed;
  const confirm = async (rules: PolicyRule[]): Promise<void> => {
    const missing = uncovered(await rbac.rulesFor(user, namespace), rules);
    if (missing.length) throw forbidden(attrs, escalationMessage(user, missing));
  };
  if (info.kind === "Role" || info.kind === "ClusterRole") {
    if (await allowedTo("escalate", info, name)) return;
    await confirm(Array.isArray(obj.rules) ? (obj.rules as PolicyRule[]) : []);
    if (info.kind === "ClusterRole" && obj.aggregationRule) {
      const missing = uncovered(await rbac.rulesFor(user, namespace), FULL_AUTHORITY);
      if (missing.length)
        throw forbidden(attrs, "must have cluster-admin privileges to write aggregated cluster roles");
    }
    return;
  }
  const ref = (obj.roleRef ?? undefined) as RoleRef | undefined;
  const refInfo = ref?.kind === "Role" ? ROLES : CLUSTER_ROLES;
  if (ref?.name && (await allowedTo("bind", refInfo, ref.name))) return;
  const rules = await rbac.roleRefRules(ref, namespace);
  if (rules) await confirm(rules);
}
