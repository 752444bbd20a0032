/**
 * metrics.k8s.io/v1beta1, read-only and computed on request (nothing stored): NodeMetrics from
 * each node's summary, PodMetrics from the summaries of the nodes the pods run on. Paths, list
 * kinds, the 404 texts and the Table columns (Name, CPU, Memory, Window) follow metrics-server.
 */
import type { V1Node, V1Pod } from "@kubernetes/client-node";
import type { IncomingMessage } from "node:http";
import {
  cpuQuantity,
  memoryQuantity,
  METRICS_API_VERSION,
  type NodeMetrics,
  type PodMetrics,
  type Summary,
} from "../../api/metrics.ts";
import type { ResourceInfo } from "../../api/resources.ts";
import { matchesLabels, parseLabelSelector } from "../../api/selectors.ts";
import { ApiError } from "../../api/status.ts";
import { findResource } from "../../api/resources.ts";
import type { Registry } from "../registry.ts";
import type { MetricsSource } from "./source.ts";

export const METRICS_GROUP = "metrics.k8s.io";
export const METRICS_VERSION = "v1beta1";
const PREFIX = `/apis/${METRICS_GROUP}/${METRICS_VERSION}`;
/** The agents sample every 10 s (node/stats.ts); the usage is an average over that window. */
const WINDOW = "10s";
const PODS = findResource("", "v1", "pods")!;

function info(kind: string, plural: string, namespaced: boolean): ResourceInfo {
  return {
    group: METRICS_GROUP,
    version: METRICS_VERSION,
    kind,
    plural,
    singular: kind.toLowerCase(),
    namespaced,
    shortNames: [],
    inAll: false,
    status: false,
    scale: false,
  };
}
export const NODE_METRICS = info("NodeMetrics", "nodes", false);
export const POD_METRICS = info("PodMetrics", "pods", true);

/** The discovery document of metrics.k8s.io/v1beta1. */
export function metricsResourceList(): Record<string, unknown> {
  return {
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: `${METRICS_GROUP}/${METRICS_VERSION}`,
    resources: [
      { name: "nodes", singularName: "", namespaced: false, kind: "NodeMetrics", verbs: ["get", "list"] },
      { name: "pods", singularName: "", namespaced: true, kind: "PodMetrics", verbs: ["get", "list"] },
    ],
  };
}

export interface MetricsRoute {
  info: ResourceInfo;
  namespace?: string;
  name?: string;
}

/** A metrics.k8s.io path taken apart; undefined when it names nothing served. */
export function parseMetricsPath(path: string): MetricsRoute | undefined {
  if (!path.startsWith(PREFIX + "/")) return undefined;
  const segs = path
    .slice(PREFIX.length + 1)
    .split("/")
    .map(decodeURIComponent);
  if (segs[0] === "nodes" && segs.length <= 2)
    return { info: NODE_METRICS, ...(segs[1] ? { name: segs[1] } : {}) };
  if (segs[0] === "pods" && segs.length === 1) return { info: POD_METRICS };
  if (segs[0] === "namespaces" && segs[2] === "pods" && segs.length <= 4 && segs[1])
    return { info: POD_METRICS, namespace: segs[1], ...(segs[3] ? { name: segs[3] } : {}) };
  return undefined;
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

function nodeMetrics(node: V1Node, s: Summary): NodeMetrics {
  return {
    kind: "NodeMetrics",
    apiVersion: METRICS_API_VERSION,
    metadata: {
      name: node.metadata?.name ?? "",
      creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      ...(node.metadata?.labels ? { labels: node.metadata.labels } : {}),
    },
    timestamp: s.node.cpu.time,
    window: WINDOW,
    usage: {
      cpu: cpuQuantity(s.node.cpu.usageNanoCores),
      memory: memoryQuantity(s.node.memory.workingSetBytes),
    },
  };
}

function podMetrics(pod: V1Pod, s: Summary): PodMetrics | undefined {
  const m = pod.metadata ?? {};
  const stats = s.pods.find(
    (p) => p.podRef.uid === m.uid || (p.podRef.namespace === m.namespace && p.podRef.name === m.name),
  );
  if (!stats || stats.containers.length === 0) return undefined;
  return {
    kind: "PodMetrics",
    apiVersion: METRICS_API_VERSION,
    metadata: {
      name: m.name ?? "",
      namespace: m.namespace ?? "",
      creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      ...(m.labels ? { labels: m.labels } : {}),
    },
    timestamp: stats.containers[0]!.cpu.time,
    window: WINDOW,
    containers: stats.containers.map((c) => ({
      name: c.name,
      usage: { cpu: cpuQuantity(c.cpu.usageNanoCores), memory: memoryQuantity(c.memory.workingSetBytes) },
    })),
  };
}

function table(items: (NodeMetrics | PodMetrics)[]): Record<string, unknown> {
  const col = (name: string, format = ""): Record<string, unknown> => ({
    name,
    type: "string",
    format,
    description: name,
    priority: 0,
  });
  const usage = (x: NodeMetrics | PodMetrics): { cpu: string; memory: string } =>
    "usage" in x
      ? x.usage
      : {
          cpu: cpuQuantity(sum(x.containers.map((c) => Number(c.usage.cpu.replace(/n$/, ""))))),
          memory: memoryQuantity(
            sum(x.containers.map((c) => Number(c.usage.memory.replace(/Ki$/, "")) * 1024)),
          ),
        };
  return {
    kind: "Table",
    apiVersion: "meta.k8s.io/v1",
    metadata: {},
    columnDefinitions: [col("Name", "name"), col("CPU"), col("Memory"), col("Window")],
    rows: items.map((x) => ({
      cells: [x.metadata.name, usage(x).cpu, usage(x).memory, x.window],
      object: { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: x.metadata },
    })),
  };
}

/** Answers one metrics request with the object, list or Table to send. */
export async function serveMetrics(
  route: MetricsRoute,
  method: string,
  q: URLSearchParams,
  req: IncomingMessage,
  registry: Registry,
  source: MetricsSource,
): Promise<unknown> {
  if (method !== "GET")
    throw new ApiError(
      405,
      "MethodNotAllowed",
      `the server does not allow this method on the requested resource`,
    );
  const sel = parseLabelSelector(q.get("labelSelector") ?? "");
  const wantsTable = /as=Table/.test(req.headers.accept ?? "");
  let items: (NodeMetrics | PodMetrics)[];
  const nodes = await source.nodes();
  if (route.info === NODE_METRICS) {
    const chosen = nodes.filter(
      (n) => (route.name ? n.metadata?.name === route.name : true) && matchesLabels(sel, n.metadata?.labels),
    );
    const got = await Promise.all(chosen.map(async (n) => ({ n, s: await source.summary(n) })));
    items = got.filter((x) => x.s).map((x) => nodeMetrics(x.n, x.s!));
    if (route.name && items.length === 0)
      throw new ApiError(404, "NotFound", `nodemetrics.metrics.k8s.io "${route.name}" not found`, {
        name: route.name,
        group: METRICS_GROUP,
        kind: "nodes",
      });
  } else {
    const pods = (
      (await registry.list(PODS, route.namespace, { labels: sel, fields: [] })).items as unknown as V1Pod[]
    ).filter(
      (p) =>
        (route.name ? p.metadata?.name === route.name : true) &&
        p.spec?.nodeName &&
        p.status?.phase === "Running",
    );
    const byName = new Map(nodes.map((n) => [n.metadata?.name ?? "", n]));
    const summaries = new Map<string, Promise<Summary | undefined>>();
    for (const p of pods) {
      const n = byName.get(p.spec!.nodeName!);
      if (n && !summaries.has(p.spec!.nodeName!)) summaries.set(p.spec!.nodeName!, source.summary(n));
    }
    items = [];
    for (const p of pods) {
      const s = await summaries.get(p.spec!.nodeName!);
      const m = s && podMetrics(p, s);
      if (m) items.push(m);
    }
    if (route.name && items.length === 0)
      throw new ApiError(
        404,
        "NotFound",
        `podmetrics.metrics.k8s.io "${route.namespace}/${route.name}" not found`,
        {
          name: route.name,
          group: METRICS_GROUP,
          kind: "pods",
        },
      );
  }
  if (wantsTable) return table(items);
  if (route.name) return items[0];
  return {
    kind: route.info === NODE_METRICS ? "NodeMetricsList" : "PodMetricsList",
    apiVersion: METRICS_API_VERSION,
    metadata: {},
    items,
  };
}
