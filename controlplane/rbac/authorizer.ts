/**
 * The RBAC authorizer's I/O: reads the ClusterRoles, ClusterRoleBindings and the request
 * namespace's Roles and RoleBindings from the registry on every check (no cache to go stale) and
 * hands them to the pure walk in rules.ts. Aggregated ClusterRoles are resolved at check time.
 */
import { findResource } from "../../api/resources.ts";
import type { Registry } from "../registry.ts";
import {
  decide,
  effectiveRules,
  grantsFor,
  type BindingObject,
  type Identity,
  type PolicyRule,
  type RbacDecision,
  type RbacPolicy,
  type RbacRequest,
  type RoleObject,
  type RoleRef,
} from "./rules.ts";

export const RBAC_GROUP = "rbac.authorization.k8s.io";
export const ROLES = findResource(RBAC_GROUP, "v1", "roles")!;
export const CLUSTER_ROLES = findResource(RBAC_GROUP, "v1", "clusterroles")!;
const BINDINGS = findResource(RBAC_GROUP, "v1", "rolebindings")!;
const CLUSTER_BINDINGS = findResource(RBAC_GROUP, "v1", "clusterrolebindings")!;
const ALL = { labels: [], fields: [] };

export class RbacAuthorizer {
  constructor(private readonly registry: Registry) {}

  private async policy(namespace: string | undefined): Promise<RbacPolicy> {
    const [clusterRoles, clusterRoleBindings, roles, roleBindings] = await Promise.all([
      this.registry.list(CLUSTER_ROLES, undefined, ALL),
      this.registry.list(CLUSTER_BINDINGS, undefined, ALL),
      namespace ? this.registry.list(ROLES, namespace, ALL) : undefined,
      namespace ? this.registry.list(BINDINGS, namespace, ALL) : undefined,
    ]);
    return {
      clusterRoles: clusterRoles.items as unknown as RoleObject[],
      clusterRoleBindings: clusterRoleBindings.items as unknown as BindingObject[],
      roles: (roles?.items ?? []) as unknown as RoleObject[],
      roleBindings: (roleBindings?.items ?? []) as unknown as BindingObject[],
    };
  }

  async authorize(user: Identity, req: RbacRequest): Promise<RbacDecision> {
    return decide(user, req, await this.policy(req.resourceRequest ? req.namespace : undefined));
  }

  /**
   * The rules a binding's roleRef grants (a Role of `namespace` or a ClusterRole, aggregation
   * resolved); undefined for a roleRef validation will refuse. A missing role is a 404.
   */
  async roleRefRules(
    ref: RoleRef | undefined,
    namespace: string | undefined,
  ): Promise<PolicyRule[] | undefined> {
    if (!ref || typeof ref.name !== "string" || ref.name === "") return undefined;
    if (ref.kind === "Role" && namespace) {
      const role = (await this.registry.get(ROLES, namespace, ref.name)) as unknown as RoleObject;
      return Array.isArray(role.rules) ? role.rules : [];
    }
    if (ref.kind !== "ClusterRole") return undefined;
    const role = (await this.registry.get(CLUSTER_ROLES, undefined, ref.name)) as unknown as RoleObject;
    if (!role.aggregationRule) return Array.isArray(role.rules) ? role.rules : [];
    const all = (await this.registry.list(CLUSTER_ROLES, undefined, ALL)).items as unknown as RoleObject[];
    return effectiveRules(role, all);
  }

  /** Every rule the caller holds in `namespace` (SelfSubjectRulesReview). */
  async rulesFor(user: Identity, namespace: string | undefined): Promise<PolicyRule[]> {
    return grantsFor(user, await this.policy(namespace), namespace).flatMap((g) => g.rules);
  }
}
