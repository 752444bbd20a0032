/**
 * The pure half of the RBAC authorizer (upstream's plugin/pkg/auth/authorizer/rbac and
 * pkg/apis/rbac/v1/evaluation_helpers.go): whether a rule covers a request, whether a binding's
 * subject is the caller, ClusterRole aggregation, and the walk over bindings that yields a
 * decision with upstream's reason text. No I/O: the caller hands in the objects.
 */
import { matchesLabels, selectorObjectToRequirements, type SelectorObject } from "../../api/selectors.ts";

export const RBAC_GROUP = "rbac.authorization.k8s.io";

export interface PolicyRule {
  verbs?: string[];
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

export interface Subject {
  kind?: string;
  apiGroup?: string;
  name?: string;
  namespace?: string;
}

export interface RoleRef {
  apiGroup?: string;
  kind?: string;
  name?: string;
}

interface Meta {
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
}

export interface RoleObject {
  metadata: Meta;
  rules?: PolicyRule[];
  aggregationRule?: { clusterRoleSelectors?: SelectorObject[] };
}

export interface BindingObject {
  metadata: Meta;
  subjects?: Subject[];
  roleRef?: RoleRef;
}

/** The caller as RBAC sees it. */
export interface Identity {
  name: string;
  groups: string[];
}

/** A request in RBAC's terms: a resource request (verb on group/resource) or a non-resource path. */
export type RbacRequest =
  | {
      resourceRequest: true;
      verb: string;
      apiGroup: string;
      resource: string;
      subresource?: string;
      name?: string;
      namespace?: string;
    }
  | { resourceRequest: false; verb: string; path: string };

const list = (v: unknown): string[] =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];

export function verbMatches(rule: PolicyRule, verb: string): boolean {
  return list(rule.verbs).some((v) => v === "*" || v === verb);
}

export function apiGroupMatches(rule: PolicyRule, group: string): boolean {
  return list(rule.apiGroups).some((g) => g === "*" || g === group);
}

/** `*`, `pods`, `pods/log` and `*‍/scale` as upstream's ResourceMatches reads them. */
export function resourceMatches(
  rule: PolicyRule,
  resource: string,
  subresource: string | undefined,
): boolean {
  const combined = subresource ? `${resource}/${subresource}` : resource;
  return list(rule.resources).some(
    (r) =>
      r === "*" ||
      r === combined ||
      (subresource !== undefined && subresource !== "" && r === `*/${subresource}`),
  );
}

/** An empty resourceNames covers every name; otherwise the request's name must be listed. */
export function resourceNameMatches(rule: PolicyRule, name: string | undefined): boolean {
  const names = list(rule.resourceNames);
  if (names.length === 0) return true;
  return name !== undefined && names.includes(name);
}

/** `*`, an exact path, or a prefix ending in `*` (`/apis/*`). */
export function nonResourceUrlMatches(rule: PolicyRule, path: string): boolean {
  return list(rule.nonResourceURLs).some(
    (u) => u === "*" || u === path || (u.endsWith("*") && path.startsWith(u.slice(0, -1))),
  );
}

export function ruleAllows(req: RbacRequest, rule: PolicyRule): boolean {
  if (!verbMatches(rule, req.verb)) return false;
  if (!req.resourceRequest) return nonResourceUrlMatches(rule, req.path);
  return (
    apiGroupMatches(rule, req.apiGroup) &&
    resourceMatches(rule, req.resource, req.subresource) &&
    resourceNameMatches(rule, req.name)
  );
}

const SA_PREFIX = "system:serviceaccount:";

/** `system:serviceaccount:NS:NAME` → [NS, NAME]; undefined for any other user. */
export function serviceAccountOf(user: string): [string, string] | undefined {
  if (!user.startsWith(SA_PREFIX)) return undefined;
  const parts = user.slice(SA_PREFIX.length).split(":");
  if (parts.length !== 2 || !parts[0] || !parts[1]) return undefined;
  return [parts[0], parts[1]];
}

/** Whether a binding's subject is the caller (a ServiceAccount without namespace means the binding's). */
export function appliesTo(subject: Subject, user: Identity, bindingNamespace: string | undefined): boolean {
  switch (subject.kind) {
    case "User":
      return subject.name === user.name;
    case "Group":
      return subject.name !== undefined && user.groups.includes(subject.name);
    case "ServiceAccount": {
      const ns = subject.namespace || bindingNamespace;
      return !!ns && !!subject.name && user.name === `${SA_PREFIX}${ns}:${subject.name}`;
    }
    default:
      return false;
  }
}

/** How upstream names a subject in a reason: `User "alice"`, `ServiceAccount "default/default"`. */
export function describeSubject(s: Subject, bindingNamespace: string | undefined): string {
  if (s.kind === "ServiceAccount")
    return `${s.kind} "${s.namespace || bindingNamespace || ""}/${s.name ?? ""}"`;
  return `${s.kind ?? ""} "${s.name ?? ""}"`;
}

function ruleKey(r: PolicyRule): string {
  return JSON.stringify([
    list(r.verbs),
    list(r.apiGroups),
    list(r.resources),
    list(r.resourceNames),
    list(r.nonResourceURLs),
  ]);
}

/**
 * The rules a ClusterRole grants: its own, or, with an aggregationRule, those of every other
 * ClusterRole one of its selectors matches (those may aggregate in turn), without duplicates, as
 * upstream's ClusterRoleAggregation controller writes them.
 */
export function effectiveRules(
  role: RoleObject,
  clusterRoles: readonly RoleObject[],
  seen: Set<string> = new Set(),
): PolicyRule[] {
  const selectors = role.aggregationRule?.clusterRoleSelectors;
  if (!Array.isArray(selectors)) return Array.isArray(role.rules) ? role.rules : [];
  const name = role.metadata.name ?? "";
  seen.add(name);
  const out: PolicyRule[] = [];
  const keys = new Set<string>();
  const reqs = selectors.map((s) => selectorObjectToRequirements(s));
  for (const other of [...clusterRoles].sort((a, b) =>
    (a.metadata.name ?? "").localeCompare(b.metadata.name ?? ""),
  )) {
    const otherName = other.metadata.name ?? "";
    if (seen.has(otherName)) continue;
    // An empty selector matches nothing in aggregation (upstream skips it).
    if (!reqs.some((r, i) => isNonEmpty(selectors[i]) && matchesLabels(r, other.metadata.labels))) continue;
    for (const rule of effectiveRules(other, clusterRoles, new Set(seen))) {
      const k = ruleKey(rule);
      if (keys.has(k)) continue;
      keys.add(k);
      out.push(rule);
    }
  }
  return out;
}

function isNonEmpty(s: SelectorObject | undefined): boolean {
  return (
    !!s &&
    (Object.keys(s.matchLabels ?? {}).length > 0 ||
      (Array.isArray(s.matchExpressions) && s.matchExpressions.length > 0))
  );
}

/** What the walk over bindings reads: all ClusterRoles and ClusterRoleBindings, a namespace's Roles and RoleBindings. */
export interface RbacPolicy {
  clusterRoles: readonly RoleObject[];
  clusterRoleBindings: readonly BindingObject[];
  /** Roles and RoleBindings of the request's namespace (empty for cluster-scoped requests). */
  roles: readonly RoleObject[];
  roleBindings: readonly BindingObject[];
}

/** One grant: the rules a binding gives the caller, and upstream's words for where they came from. */
export interface Grant {
  source: string;
  rules: PolicyRule[];
}

function roleRules(
  ref: RoleRef | undefined,
  p: RbacPolicy,
  namespace: string | undefined,
): PolicyRule[] | undefined {
  if (!ref || ref.apiGroup !== RBAC_GROUP) return undefined;
  if (ref.kind === "ClusterRole") {
    const role = p.clusterRoles.find((r) => r.metadata.name === ref.name);
    return role ? effectiveRules(role, p.clusterRoles) : undefined;
  }
  if (ref.kind === "Role" && namespace) {
    const role = p.roles.find(
      (r) => r.metadata.name === ref.name && (r.metadata.namespace ?? namespace) === namespace,
    );
    return role && Array.isArray(role.rules) ? role.rules : undefined;
  }
  return undefined;
}

/** Every grant the caller holds in `namespace` (cluster-wide ones first), as upstream's VisitRulesFor. */
export function grantsFor(user: Identity, p: RbacPolicy, namespace: string | undefined): Grant[] {
  const out: Grant[] = [];
  /** The grant of binding `b` (of `kind`, in `ns` for a RoleBinding), when it applies to the caller. */
  const grant = (b: BindingObject, kind: string, ns: string | undefined): void => {
    const subject = (b.subjects ?? []).find((s) => appliesTo(s, user, ns));
    if (!subject) return;
    const rules = roleRules(b.roleRef, p, ns);
    if (!rules) return;
    out.push({
      source: `${kind} "${b.metadata.name ?? ""}${ns ? `/${ns}` : ""}" of ${b.roleRef?.kind ?? ""} "${b.roleRef?.name ?? ""}" to ${describeSubject(subject, ns)}`,
      rules,
    });
  };
  for (const b of p.clusterRoleBindings) grant(b, "ClusterRoleBinding", undefined);
  if (!namespace) return out;
  for (const b of p.roleBindings) {
    if (b.metadata.namespace !== undefined && b.metadata.namespace !== namespace) continue;
    grant(b, "RoleBinding", namespace);
  }
  return out;
}

export type RbacDecision = { allowed: true; reason: string } | { allowed: false };

/** Allowed with upstream's reason (`RBAC: allowed by ...`) when some grant's rule covers the request. */
export function decide(user: Identity, req: RbacRequest, p: RbacPolicy): RbacDecision {
  const ns = req.resourceRequest ? req.namespace : undefined;
  for (const g of grantsFor(user, p, ns)) {
    if (g.rules.some((r) => ruleAllows(req, r)))
      return { allowed: true, reason: `RBAC: allowed by ${g.source}` };
  }
  return { allowed: false };
}
