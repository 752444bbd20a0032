import { describe, expect, it } from "vitest";
import { bootstrapClusterRoles } from "../../../../controlplane/rbac/bootstrap-policy.ts";
import {
  appliesTo,
  decide,
  effectiveRules,
  nonResourceUrlMatches,
  resourceMatches,
  ruleAllows,
  type RbacPolicy,
  type RbacRequest,
  type RoleObject,
} from "../../../../controlplane/rbac/rules.ts";

const G = "rbac.authorization.k8s.io";
const req = (
  verb: string,
  resource: string,
  extra: Partial<Extract<RbacRequest, { resourceRequest: true }>> = {},
) => ({ resourceRequest: true, verb, apiGroup: "", resource, ...extra }) as RbacRequest;

describe("rule matching (upstream's evaluation_helpers)", () => {
  it("matches verbs, groups, resources and names, with * wildcards", () => {
    const rule = { verbs: ["get", "list"], apiGroups: [""], resources: ["pods"] };
    expect(ruleAllows(req("get", "pods"), rule)).toBe(true);
    expect(ruleAllows(req("delete", "pods"), rule)).toBe(false);
    expect(ruleAllows(req("get", "pods", { apiGroup: "apps" }), rule)).toBe(false);
    expect(ruleAllows(req("get", "secrets"), rule)).toBe(false);
    expect(
      ruleAllows(req("delete", "anything", { apiGroup: "x.io" }), {
        verbs: ["*"],
        apiGroups: ["*"],
        resources: ["*"],
      }),
    ).toBe(true);
  });

  it("treats subresources as resource/subresource, and */sub as any resource's sub", () => {
    expect(resourceMatches({ resources: ["pods"] }, "pods", "log")).toBe(false);
    expect(resourceMatches({ resources: ["pods/log"] }, "pods", "log")).toBe(true);
    expect(resourceMatches({ resources: ["*/scale"] }, "deployments", "scale")).toBe(true);
    expect(resourceMatches({ resources: ["*/scale"] }, "deployments", undefined)).toBe(false);
  });

  it("restricts to resourceNames when listed (a list has no name, so it is not covered)", () => {
    const rule = { verbs: ["get", "list"], apiGroups: [""], resources: ["configmaps"], resourceNames: ["a"] };
    expect(ruleAllows(req("get", "configmaps", { name: "a" }), rule)).toBe(true);
    expect(ruleAllows(req("get", "configmaps", { name: "b" }), rule)).toBe(false);
    expect(ruleAllows(req("list", "configmaps"), rule)).toBe(false);
  });

  it("matches non-resource URLs exactly or by a trailing * prefix, never resource requests", () => {
    const rule = { verbs: ["get"], nonResourceURLs: ["/apis/*", "/version"] };
    expect(nonResourceUrlMatches(rule, "/apis/apps/v1")).toBe(true);
    expect(nonResourceUrlMatches(rule, "/version")).toBe(true);
    expect(nonResourceUrlMatches(rule, "/versions")).toBe(false);
    expect(ruleAllows({ resourceRequest: false, verb: "get", path: "/version" }, rule)).toBe(true);
    expect(ruleAllows({ resourceRequest: false, verb: "post", path: "/version" }, rule)).toBe(false);
    expect(ruleAllows(req("get", "pods"), { verbs: ["get"], nonResourceURLs: ["*"] })).toBe(false);
  });
});

describe("subjects", () => {
  const sa = { name: "system:serviceaccount:team:builder", groups: ["system:serviceaccounts"] };
  it("binds a ServiceAccount by namespace and name, defaulting the namespace to the binding's", () => {
    expect(appliesTo({ kind: "ServiceAccount", name: "builder", namespace: "team" }, sa, undefined)).toBe(
      true,
    );
    expect(appliesTo({ kind: "ServiceAccount", name: "builder" }, sa, "team")).toBe(true);
    expect(appliesTo({ kind: "ServiceAccount", name: "builder" }, sa, "other")).toBe(false);
    expect(appliesTo({ kind: "ServiceAccount", name: "builder" }, sa, undefined)).toBe(false);
  });
  it("binds users by name and groups by membership", () => {
    expect(
      appliesTo({ kind: "User", apiGroup: G, name: "alice" }, { name: "alice", groups: [] }, undefined),
    ).toBe(true);
    expect(
      appliesTo({ kind: "User", apiGroup: G, name: "alice" }, { name: "bob", groups: [] }, undefined),
    ).toBe(false);
    expect(appliesTo({ kind: "Group", apiGroup: G, name: "system:serviceaccounts" }, sa, undefined)).toBe(
      true,
    );
    expect(appliesTo({ kind: "Nobody", name: "x" }, sa, undefined)).toBe(false);
  });
});

describe("aggregation and decisions", () => {
  const roles = bootstrapClusterRoles() as unknown as RoleObject[];
  const byName = (n: string): RoleObject => roles.find((r) => r.metadata.name === n)!;

  it("resolves admin through edit and view (edit is labelled aggregate-to-admin, view aggregate-to-edit)", () => {
    const admin = effectiveRules(byName("admin"), roles);
    const edit = effectiveRules(byName("edit"), roles);
    const view = effectiveRules(byName("view"), roles);
    const can = (rules: typeof admin, r: RbacRequest) => rules.some((x) => ruleAllows(r, x));
    expect(can(view, req("list", "pods"))).toBe(true);
    expect(can(view, req("delete", "pods"))).toBe(false);
    expect(can(view, req("get", "secrets"))).toBe(false);
    expect(can(edit, req("delete", "pods"))).toBe(true);
    expect(can(edit, req("list", "pods"))).toBe(true);
    expect(can(edit, req("create", "rolebindings", { apiGroup: G }))).toBe(false);
    expect(can(admin, req("create", "rolebindings", { apiGroup: G }))).toBe(true);
    expect(can(admin, req("get", "secrets"))).toBe(true);
  });

  it("adds a labelled ClusterRole's rules, and not an unlabelled one's", () => {
    const extra: RoleObject = {
      metadata: { name: "widgets", labels: { [`${G}/aggregate-to-edit`]: "true" } },
      rules: [{ verbs: ["get"], apiGroups: ["example.com"], resources: ["widgets"] }],
    };
    const other: RoleObject = {
      metadata: { name: "gadgets" },
      rules: [{ verbs: ["get"], apiGroups: ["example.com"], resources: ["gadgets"] }],
    };
    const all = [...roles, extra, other];
    const edit = effectiveRules(byName("edit"), all);
    expect(edit.some((r) => ruleAllows(req("get", "widgets", { apiGroup: "example.com" }), r))).toBe(true);
    expect(edit.some((r) => ruleAllows(req("get", "gadgets", { apiGroup: "example.com" }), r))).toBe(false);
    // admin aggregates edit, so it sees the new rule too
    const admin = effectiveRules(byName("admin"), all);
    expect(admin.some((r) => ruleAllows(req("get", "widgets", { apiGroup: "example.com" }), r))).toBe(true);
  });

  it("survives aggregation cycles", () => {
    const a: RoleObject = {
      metadata: { name: "a", labels: { x: "b" } },
      aggregationRule: { clusterRoleSelectors: [{ matchLabels: { x: "a" } }] },
    };
    const b: RoleObject = {
      metadata: { name: "b", labels: { x: "a" } },
      aggregationRule: { clusterRoleSelectors: [{ matchLabels: { x: "b" } }] },
    };
    expect(effectiveRules(a, [a, b])).toEqual([]);
  });

  it("names the binding that allowed, as upstream's reason", () => {
    const p: RbacPolicy = {
      clusterRoles: roles,
      clusterRoleBindings: [],
      roles: [],
      roleBindings: [
        {
          metadata: { name: "sa-edit", namespace: "default" },
          roleRef: { apiGroup: G, kind: "ClusterRole", name: "edit" },
          subjects: [{ kind: "ServiceAccount", name: "default", namespace: "default" }],
        },
      ],
    };
    const user = { name: "system:serviceaccount:default:default", groups: [] };
    expect(decide(user, req("delete", "pods", { namespace: "default" }), p)).toEqual({
      allowed: true,
      reason:
        'RBAC: allowed by RoleBinding "sa-edit/default" of ClusterRole "edit" to ServiceAccount "default/default"',
    });
    expect(decide(user, req("delete", "pods", { namespace: "kube-system" }), p)).toEqual({ allowed: false });
    expect(decide(user, req("delete", "nodes"), p)).toEqual({ allowed: false });
  });
});
