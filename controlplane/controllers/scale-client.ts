/**
 * What the disruption and autoscaling controllers need beyond ObjectWriter: any kind's scale
 * subresource (so StatefulSets, ReplicationControllers and whatever else serves `/scale` work
 * without code of their own) and pod metrics from metrics.k8s.io. Over the typed client's
 * `request`; kinds are looked up in RESOURCES by apiVersion and kind.
 */
import type { LabClient } from "../../api/client.ts";
import { findKind } from "../../api/resources.ts";
import type { PodMetrics } from "../../api/metrics.ts";
import { ApiError } from "../../api/status.ts";

export interface ScaleTarget {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
}

export interface Scale {
  replicas: number;
  statusReplicas: number;
  /** status.selector: the pods the target counts, as a label selector string. */
  selector: string;
  resourceVersion?: string;
}

export interface ScaleClient {
  /** The target's scale; a 404 when the kind is not served, has no scale, or the object is missing. */
  getScale(t: ScaleTarget): Promise<Scale>;
  setScale(t: ScaleTarget, replicas: number): Promise<Scale>;
}

export interface PodMetricsReader {
  list(namespace: string, labelSelector: string): Promise<PodMetrics[]>;
}

function scalePath(t: ScaleTarget): string {
  const info = findKind(t.apiVersion, t.kind);
  if (!info?.scale)
    throw new ApiError(
      404,
      "NotFound",
      `no matches for kind "${t.kind}" in version "${t.apiVersion}" with a scale subresource`,
    );
  const base = info.group ? `/apis/${info.group}/${info.version}` : `/api/${info.version}`;
  return `${base}/namespaces/${encodeURIComponent(t.namespace)}/${info.plural}/${encodeURIComponent(t.name)}/scale`;
}

interface ScaleObject {
  metadata?: { resourceVersion?: string };
  spec?: { replicas?: number };
  status?: { replicas?: number; selector?: string };
}

const toScale = (s: ScaleObject): Scale => ({
  replicas: s.spec?.replicas ?? 0,
  statusReplicas: s.status?.replicas ?? 0,
  selector: s.status?.selector ?? "",
  resourceVersion: s.metadata?.resourceVersion,
});

export function clientScales(c: LabClient): ScaleClient {
  return {
    async getScale(t) {
      return toScale(await c.request<ScaleObject>("GET", scalePath(t)));
    },
    async setScale(t, replicas) {
      return toScale(
        await c.request<ScaleObject>(
          "PATCH",
          scalePath(t),
          { spec: { replicas } },
          "application/merge-patch+json",
        ),
      );
    },
  };
}

export function clientPodMetrics(c: LabClient): PodMetricsReader {
  return {
    async list(namespace, labelSelector) {
      const q = labelSelector ? `?labelSelector=${encodeURIComponent(labelSelector)}` : "";
      const list = await c.request<{ items?: PodMetrics[] }>(
        "GET",
        `/apis/metrics.k8s.io/v1beta1/namespaces/${encodeURIComponent(namespace)}/pods${q}`,
      );
      return list.items ?? [];
    },
  };
}
