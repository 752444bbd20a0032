/** The resources lab-server serves: names, scope and subresources, shared by server, client and CLI. */
export interface ResourceInfo {
  group: string; // "" for the core group
  version: string;
  kind: string;
  plural: string;
  singular: string;
  namespaced: boolean;
  shortNames: string[];
  /** In kubectl's "all" category (`kubectl get all`). */
  inAll: boolean;
  status: boolean;
  scale: boolean;
}

function r(
  group: string,
  version: string,
  kind: string,
  plural: string,
  namespaced: boolean,
  extra: Partial<Pick<ResourceInfo, "shortNames" | "inAll" | "status" | "scale">> = {},
): ResourceInfo {
  return {
    group,
    version,
    kind,
    plural,
    singular: kind.toLowerCase(),
    namespaced,
    shortNames: extra.shortNames ?? [],
    inAll: extra.inAll ?? false,
    status: extra.status ?? false,
    scale: extra.scale ?? false,
  };
}

/** A workload with a status and a scale subresource, listed by `kubectl get all`. */
const scalableWorkload = (shortName: string) => ({
  shortNames: [shortName],
  inAll: true,
  status: true,
  scale: true,
});

export const RESOURCES: readonly ResourceInfo[] = [
  r("", "v1", "Namespace", "namespaces", false, { shortNames: ["ns"], status: true }),
  r("", "v1", "Node", "nodes", false, { shortNames: ["no"], status: true }),
  r("", "v1", "Pod", "pods", true, { shortNames: ["po"], inAll: true, status: true }),
  r("", "v1", "Service", "services", true, { shortNames: ["svc"], inAll: true, status: true }),
  r("", "v1", "Endpoints", "endpoints", true, { shortNames: ["ep"] }),
  r("", "v1", "ConfigMap", "configmaps", true, { shortNames: ["cm"] }),
  r("", "v1", "Secret", "secrets", true),
  r("", "v1", "Event", "events", true, { shortNames: ["ev"] }),
  r("", "v1", "ServiceAccount", "serviceaccounts", true, { shortNames: ["sa"] }),
  r("apps", "v1", "Deployment", "deployments", true, scalableWorkload("deploy")),
  r("apps", "v1", "ReplicaSet", "replicasets", true, scalableWorkload("rs")),
  r("coordination.k8s.io", "v1", "Lease", "leases", true),
  r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true),
  // Workloads (issue 19): batch/v1 Job and CronJob, apps/v1 DaemonSet, StatefulSet and
  // ControllerRevision, core ReplicationController.
  r("", "v1", "ReplicationController", "replicationcontrollers", true, scalableWorkload("rc")),
  r("apps", "v1", "DaemonSet", "daemonsets", true, { shortNames: ["ds"], inAll: true, status: true }),
  r("apps", "v1", "StatefulSet", "statefulsets", true, scalableWorkload("sts")),
  r("apps", "v1", "ControllerRevision", "controllerrevisions", true),
  r("batch", "v1", "Job", "jobs", true, { inAll: true, status: true }),
  r("batch", "v1", "CronJob", "cronjobs", true, { shortNames: ["cj"], inAll: true, status: true }),
  r("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true, {
    shortNames: ["pdb"],
    status: true,
  }),
  r("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", true, {
    shortNames: ["hpa"],
    inAll: true,
    status: true,
  }),
  // Served converted from and to the stored autoscaling/v2 (kubectl 1.32's `autoscale` posts v1).
  r("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", true, {
    shortNames: ["hpa"],
    status: true,
  }),
  // RBAC (issue 20): the authorizer consulted after the fixed policy (controlplane/rbac/).
  r("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
  r("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false),
  r("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true),
  r("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false),
];

export function groupVersion(info: Pick<ResourceInfo, "group" | "version">): string {
  return info.group ? `${info.group}/${info.version}` : info.version;
}

export function findResource(group: string, version: string, plural: string): ResourceInfo | undefined {
  return RESOURCES.find((x) => x.group === group && x.version === version && x.plural === plural);
}

export function findKind(apiVersion: string, kind: string): ResourceInfo | undefined {
  return RESOURCES.find((x) => groupVersion(x) === apiVersion && x.kind === kind);
}

/** Resources with a `spec` whose changes bump metadata.generation. */
export function hasSpec(info: ResourceInfo): boolean {
  return ![
    "ConfigMap",
    "Secret",
    "Event",
    "ServiceAccount",
    "Endpoints",
    "EndpointSlice",
    "ControllerRevision",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
  ].includes(info.kind);
}
