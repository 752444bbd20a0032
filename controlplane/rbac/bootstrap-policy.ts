/**
 * The default ClusterRoles and ClusterRoleBindings kube-apiserver creates at start
 * (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go): cluster-admin for system:masters,
 * the user-facing admin/edit/view (aggregated from system:aggregate-to-*), and what every
 * authenticated caller may do (system:basic-user, system:discovery, system:public-info-viewer).
 * Created when missing; an existing one is the cluster's to change and is left as it is.
 */
import { findResource } from "../../api/resources.ts";
import { ApiError } from "../../api/status.ts";
import type { KObject, Registry } from "../registry.ts";
import type { PolicyRule, Subject } from "./rules.ts";

const G = "rbac.authorization.k8s.io";
const API_VERSION = `${G}/v1`;
const READ = ["get", "list", "watch"];
const WRITE = ["create", "delete", "deletecollection", "patch", "update"];
const AGGREGATE = (to: string): string => `${G}/aggregate-to-${to}`;
const BOOTSTRAP_LABELS = { "kubernetes.io/bootstrapping": "rbac-defaults" };
const AUTOUPDATE = { "rbac.authorization.kubernetes.io/autoupdate": "true" };

const rule = (verbs: string[], apiGroups: string[], resources: string[]): PolicyRule => ({
  verbs,
  apiGroups,
  resources,
});
const urls = (verbs: string[], nonResourceURLs: string[]): PolicyRule => ({ verbs, nonResourceURLs });

function clusterRole(
  name: string,
  rules: PolicyRule[] | undefined,
  extra: { labels?: Record<string, string>; aggregateFrom?: string } = {},
): KObject {
  const role: KObject = {
    apiVersion: API_VERSION,
    kind: "ClusterRole",
    metadata: { name, labels: { ...BOOTSTRAP_LABELS, ...extra.labels }, annotations: { ...AUTOUPDATE } },
  };
  if (extra.aggregateFrom !== undefined) {
    role.aggregationRule = {
      clusterRoleSelectors: [{ matchLabels: { [AGGREGATE(extra.aggregateFrom)]: "true" } }],
    };
    role.rules = [];
  } else role.rules = rules ?? [];
  return role;
}

function clusterRoleBinding(name: string, role: string, subjects: Subject[]): KObject {
  return {
    apiVersion: API_VERSION,
    kind: "ClusterRoleBinding",
    metadata: { name, labels: { ...BOOTSTRAP_LABELS }, annotations: { ...AUTOUPDATE } },
    roleRef: { apiGroup: G, kind: "ClusterRole", name: role },
    subjects,
  };
}

const group = (name: string): Subject => ({ kind: "Group", apiGroup: G, name });

export const VIEW_RULES: PolicyRule[] = [
  rule(
    READ,
    [""],
    [
      "pods",
      "replicationcontrollers",
      "replicationcontrollers/scale",
      "serviceaccounts",
      "services",
      "services/status",
      "endpoints",
      "persistentvolumeclaims",
      "persistentvolumeclaims/status",
      "configmaps",
    ],
  ),
  rule(
    READ,
    [""],
    [
      "limitranges",
      "resourcequotas",
      "bindings",
      "events",
      "pods/status",
      "resourcequotas/status",
      "namespaces/status",
      "replicationcontrollers/status",
      "pods/log",
    ],
  ),
  rule(READ, [""], ["namespaces"]),
  rule(READ, ["discovery.k8s.io"], ["endpointslices"]),
  rule(
    READ,
    ["apps"],
    [
      "controllerrevisions",
      "statefulsets",
      "statefulsets/scale",
      "statefulsets/status",
      "daemonsets",
      "daemonsets/status",
      "deployments",
      "deployments/scale",
      "deployments/status",
      "replicasets",
      "replicasets/scale",
      "replicasets/status",
    ],
  ),
  rule(READ, ["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
  rule(READ, ["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
  rule(
    READ,
    ["extensions"],
    [
      "daemonsets",
      "daemonsets/status",
      "deployments",
      "deployments/scale",
      "deployments/status",
      "ingresses",
      "ingresses/status",
      "networkpolicies",
      "replicasets",
      "replicasets/scale",
      "replicasets/status",
      "replicationcontrollers/scale",
    ],
  ),
  rule(READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
  rule(READ, ["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"]),
];

export const EDIT_RULES: PolicyRule[] = [
  rule(
    READ,
    [""],
    ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"],
  ),
  rule(["impersonate"], [""], ["serviceaccounts"]),
  rule(WRITE, [""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
  rule(["create"], [""], ["pods/eviction"]),
  rule(
    WRITE,
    [""],
    [
      "configmaps",
      "events",
      "persistentvolumeclaims",
      "replicationcontrollers",
      "replicationcontrollers/scale",
      "secrets",
      "serviceaccounts",
      "services",
      "services/proxy",
    ],
  ),
  rule(["create"], [""], ["serviceaccounts/token"]),
  rule(
    WRITE,
    ["apps"],
    [
      "statefulsets",
      "statefulsets/scale",
      "daemonsets",
      "deployments",
      "deployments/rollback",
      "deployments/scale",
      "replicasets",
      "replicasets/scale",
    ],
  ),
  rule(WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
  rule(WRITE, ["batch"], ["cronjobs", "jobs"]),
  rule(
    WRITE,
    ["extensions"],
    [
      "daemonsets",
      "deployments",
      "deployments/rollback",
      "deployments/scale",
      "ingresses",
      "networkpolicies",
      "replicasets",
      "replicasets/scale",
      "replicationcontrollers/scale",
    ],
  ),
  rule(WRITE, ["policy"], ["poddisruptionbudgets"]),
  rule(WRITE, ["networking.k8s.io"], ["ingresses", "networkpolicies"]),
];

export const ADMIN_RULES: PolicyRule[] = [
  rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
  rule([...WRITE, ...READ].sort(), [G], ["rolebindings", "roles"]),
];

export function bootstrapClusterRoles(): KObject[] {
  return [
    clusterRole("cluster-admin", [{ verbs: ["*"], apiGroups: ["*"], resources: ["*"] }, urls(["*"], ["*"])]),
    clusterRole("admin", undefined, { aggregateFrom: "admin" }),
    clusterRole("edit", undefined, { aggregateFrom: "edit", labels: { [AGGREGATE("admin")]: "true" } }),
    clusterRole("view", undefined, { aggregateFrom: "view", labels: { [AGGREGATE("edit")]: "true" } }),
    clusterRole("system:aggregate-to-admin", ADMIN_RULES, { labels: { [AGGREGATE("admin")]: "true" } }),
    clusterRole("system:aggregate-to-edit", EDIT_RULES, { labels: { [AGGREGATE("edit")]: "true" } }),
    clusterRole("system:aggregate-to-view", VIEW_RULES, { labels: { [AGGREGATE("view")]: "true" } }),
    clusterRole("system:basic-user", [
      rule(["create"], ["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
      rule(["create"], ["authentication.k8s.io"], ["selfsubjectreviews"]),
    ]),
    clusterRole("system:discovery", [
      urls(
        ["get"],
        [
          "/api",
          "/api/*",
          "/apis",
          "/apis/*",
          "/healthz",
          "/livez",
          "/openapi",
          "/openapi/*",
          "/readyz",
          "/version",
          "/version/",
        ],
      ),
    ]),
    clusterRole("system:public-info-viewer", [
      urls(["get"], ["/healthz", "/livez", "/readyz", "/version", "/version/"]),
    ]),
  ];
}

export function bootstrapClusterRoleBindings(): KObject[] {
  return [
    clusterRoleBinding("cluster-admin", "cluster-admin", [group("system:masters")]),
    clusterRoleBinding("system:basic-user", "system:basic-user", [group("system:authenticated")]),
    clusterRoleBinding("system:discovery", "system:discovery", [group("system:authenticated")]),
    clusterRoleBinding("system:public-info-viewer", "system:public-info-viewer", [
      group("system:authenticated"),
      group("system:unauthenticated"),
    ]),
  ];
}

/** Creates each default ClusterRole and ClusterRoleBinding that is missing (one list each, then the creates). */
export async function ensureBootstrapPolicy(registry: Registry): Promise<void> {
  const roles = findResource(G, "v1", "clusterroles")!;
  const bindings = findResource(G, "v1", "clusterrolebindings")!;
  for (const [info, wanted] of [
    [roles, bootstrapClusterRoles()],
    [bindings, bootstrapClusterRoleBindings()],
  ] as const) {
    const have = new Set(
      (await registry.list(info, undefined, { labels: [], fields: [] })).items.map((o) => o.metadata.name),
    );
    for (const obj of wanted) {
      if (have.has(obj.metadata.name)) continue;
      await registry.create(info, undefined, obj).catch((err: unknown) => {
        // Another master made it meanwhile.
        if (!(err instanceof ApiError && err.reason === "AlreadyExists")) throw err;
      });
    }
  }
}
