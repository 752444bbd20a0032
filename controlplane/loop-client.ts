/**
 * What control loops need from the API, as one small interface: the typed REST client implements
 * it over HTTPS, tests may implement it in memory. Errors carry the HTTP status in `code`
 * (404 not found, 409 conflict) so loops can tell "already done" from "retry".
 */
import type { CoreV1Event } from "@kubernetes/client-node";
import type { KubeObject, ListWatcher } from "../api/informer.ts";

export type Resource =
  | "pods"
  | "nodes"
  | "replicasets"
  | "deployments"
  | "services"
  | "endpoints"
  | "endpointslices"
  | "events"
  | "namespaces"
  | "leases"
  | "persistentvolumeclaims"
  | "replicationcontrollers"
  | "daemonsets"
  | "statefulsets"
  | "controllerrevisions"
  | "jobs"
  | "cronjobs"
  | "poddisruptionbudgets"
  | "horizontalpodautoscalers"
  | "serviceaccounts"
  | "configmaps"
  | "clusterroles";

export type PropagationPolicy = "Background" | "Foreground" | "Orphan";

export interface ObjectWriter {
  get<T extends KubeObject>(
    resource: Resource,
    namespace: string | undefined,
    name: string,
  ): Promise<T | undefined>;
  create<T extends KubeObject>(resource: Resource, namespace: string | undefined, obj: T): Promise<T>;
  update<T extends KubeObject>(resource: Resource, namespace: string | undefined, obj: T): Promise<T>;
  updateStatus<T extends KubeObject>(resource: Resource, namespace: string | undefined, obj: T): Promise<T>;
  delete(
    resource: Resource,
    namespace: string | undefined,
    name: string,
    opts?: { propagationPolicy?: PropagationPolicy; uid?: string },
  ): Promise<void>;
  /** POST pods/{name}/binding. */
  bind(namespace: string, pod: string, node: string): Promise<void>;
}

/** List+watch of one resource across namespaces (or in one namespace). */
export type ListWatchFactory = <T extends KubeObject>(
  resource: Resource,
  namespace?: string,
) => ListWatcher<T>;

export function errorCode(err: unknown): number | undefined {
  if (err && typeof err === "object") {
    const e = err as { code?: unknown; statusCode?: unknown; status?: unknown };
    for (const v of [e.code, e.statusCode, e.status]) if (typeof v === "number") return v;
  }
  return undefined;
}

export const isNotFound = (err: unknown): boolean => errorCode(err) === 404;
export const isConflict = (err: unknown): boolean => errorCode(err) === 409;
export const isAlreadyExists = isConflict;

/** Records an Event about an object; failures to record are not worth failing a reconcile for. */
export async function recordEvent(
  w: ObjectWriter,
  source: string,
  obj: { apiVersion?: string; kind?: string; metadata?: { name?: string; namespace?: string; uid?: string } },
  type: "Normal" | "Warning",
  reason: string,
  message: string,
): Promise<void> {
  const ns = obj.metadata?.namespace ?? "default";
  const now = new Date().toISOString();
  const ev: CoreV1Event = {
    apiVersion: "v1",
    kind: "Event",
    metadata: {
      namespace: ns,
      name: `${obj.metadata?.name}.${Date.now().toString(16)}${Math.random().toString(16).slice(2, 6)}`,
    },
    involvedObject: {
      apiVersion: obj.apiVersion,
      kind: obj.kind,
      name: obj.metadata?.name,
      namespace: obj.metadata?.namespace,
      uid: obj.metadata?.uid,
    },
    reason,
    message,
    type,
    source: { component: source },
    firstTimestamp: now as unknown as Date,
    lastTimestamp: now as unknown as Date,
    count: 1,
  };
  try {
    await w.create("events", ns, ev);
  } catch {
    // Events are best effort, as in Kubernetes.
  }
}
