/**
 * The RBAC authorizer's I/O: reads the ClusterRoles, ClusterRoleBindings and the request
 * namespace's Roles and RoleBindings from the registry on every check (no cache to go stale) and
 * hands them to the pure walk in rules.ts. Aggregated ClusterRoles are resolved at check time.
 */
import { findResource } from "../../api/resources.ts";
import type { Registry } from "../registry.ts";
import {
  decide,
  grantsFor,
  type BindingObject,
  type Identity,
  type PolicyRule,
  type RbacDecision,
  type RbacPolicy,
  type RbacRequest,
  type RoleObject,
} from "./rules.ts";

const G = "rbac.authorization.k8s.io";
const ROLES = findResource(G, "v1", "roles")!;
const CLUSTER_ROLES = findResource(G, "v1", "clusterroles")!;
const BINDINGS = findResource(G, "v1", "rolebindings")!;
const CLUSTER_BINDINGS = findResource(G, "v1", "clusterrolebindings")!;
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

  /** Every rule the caller holds in `namespace` (SelfSubjectRulesReview). */
  async rulesFor(user: Identity, namespace: string | undefined): Promise<PolicyRule[]> {
    return grantsFor(user, await this.policy(namespace), namespace).flatMap((g) => g.rules);
  }
}
