/** The types of the typed client (api/client.ts): resources by plural, lists, watch events, options. */
import type {
  CoreV1Event,
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1ConfigMap,
  V1ControllerRevision,
  V1CronJob,
  V1DaemonSet,
  V1Deployment,
  V1Endpoints,
  V1EndpointSlice,
  V1Job,
  V1Lease,
  V1Namespace,
  V1Node,
  V1PersistentVolumeClaim,
  V1PodDisruptionBudget,
  V2HorizontalPodAutoscaler,
  V1Pod,
  V1ReplicaSet,
  V1ReplicationController,
  V1Role,
  V1RoleBinding,
  V1Secret,
  V1Service,
  V1ServiceAccount,
  V1StatefulSet,
  V1Status,
} from "@kubernetes/client-node";

export interface ResourceTypes {
  namespaces: V1Namespace;
  nodes: V1Node;
  pods: V1Pod;
  services: V1Service;
  endpoints: V1Endpoints;
  endpointslices: V1EndpointSlice;
  configmaps: V1ConfigMap;
  secrets: V1Secret;
  events: CoreV1Event;
  serviceaccounts: V1ServiceAccount;
  deployments: V1Deployment;
  replicasets: V1ReplicaSet;
  leases: V1Lease;
  poddisruptionbudgets: V1PodDisruptionBudget;
  horizontalpodautoscalers: V2HorizontalPodAutoscaler;
  /** Not served yet: the client answers `unknown resource` until a RESOURCES entry exists. */
  persistentvolumeclaims: V1PersistentVolumeClaim;
  replicationcontrollers: V1ReplicationController;
  daemonsets: V1DaemonSet;
  statefulsets: V1StatefulSet;
  controllerrevisions: V1ControllerRevision;
  jobs: V1Job;
  cronjobs: V1CronJob;
  roles: V1Role;
  clusterroles: V1ClusterRole;
  rolebindings: V1RoleBinding;
  clusterrolebindings: V1ClusterRoleBinding;
}
export type Plural = keyof ResourceTypes;

export interface ObjectList<T> {
  apiVersion?: string;
  kind?: string;
  metadata: { resourceVersion?: string; continue?: string };
  items: T[];
}

export interface WatchEvent<T> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK";
  object: T;
}

export interface ListOptions {
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  limit?: number;
  continue?: string;
}

export interface WatchOptions extends Omit<ListOptions, "limit" | "continue"> {
  resourceVersion?: string;
  allowWatchBookmarks?: boolean;
  timeoutSeconds?: number;
  signal?: AbortSignal;
}

export type PatchType = "merge" | "json" | "strategic";

export interface DeleteOptions {
  gracePeriodSeconds?: number;
  propagationPolicy?: "Foreground" | "Background" | "Orphan";
  preconditions?: { uid?: string; resourceVersion?: string };
}

export interface ClientConfig {
  /** https://host:port */
  server: string;
  ca: Buffer | string;
  cert: Buffer | string;
  key: Buffer | string;
  /** Per-request timeout for non-watch calls. */
  timeoutMs?: number;
  /**
   * Connections kept for non-watch calls (default 64); more calls at once wait for a free one
   * instead of each opening its own TLS connection. Watches have their own, unbounded pool.
   */
  maxSockets?: number;
}

/** A failed API call: the HTTP code and the server's Status. */
export class ApiStatusError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    readonly status: V1Status | undefined,
  ) {
    super(status?.message ?? `HTTP ${code}`);
  }
}
