/**
 * Resource metrics, shared by lab-agent (which measures them), hollow nodes (which make them up)
 * and lab-server (which serves them as metrics.k8s.io/v1beta1): the agent's /stats/summary answer
 * (the subset of the kubelet's stats/v1alpha1 Summary that metrics-server reads), and the
 * NodeMetrics and PodMetrics objects built from it.
 */
import type { V1Pod } from "@kubernetes/client-node";
import { cpuMillis, memoryBytes } from "../lib/quantity.ts";

export interface CpuStats {
  time: string;
  /** Average over the last sampling window. */
  usageNanoCores: number;
  /** Cumulative since the container (or node) started. */
  usageCoreNanoSeconds?: number;
}
export interface MemoryStats {
  time: string;
  workingSetBytes: number;
}
export interface ContainerStats {
  name: string;
  cpu: CpuStats;
  memory: MemoryStats;
}
export interface PodStats {
  podRef: { name: string; namespace: string; uid: string };
  containers: ContainerStats[];
}
export interface Summary {
  node: { nodeName: string; cpu: CpuStats; memory: MemoryStats };
  pods: PodStats[];
}

export const METRICS_API_VERSION = "metrics.k8s.io/v1beta1";

export interface NodeMetrics {
  kind: "NodeMetrics";
  apiVersion: typeof METRICS_API_VERSION;
  metadata: { name: string; creationTimestamp: string; labels?: Record<string, string> };
  timestamp: string;
  window: string;
  usage: { cpu: string; memory: string };
}

export interface PodMetrics {
  kind: "PodMetrics";
  apiVersion: typeof METRICS_API_VERSION;
  metadata: { name: string; namespace: string; creationTimestamp: string; labels?: Record<string, string> };
  timestamp: string;
  window: string;
  containers: { name: string; usage: { cpu: string; memory: string } }[];
}

/** Quantities as metrics-server writes them: CPU in nanocores, memory in Ki. */
export const cpuQuantity = (nanoCores: number): string => `${Math.max(0, Math.round(nanoCores))}n`;
export const memoryQuantity = (bytes: number): string => `${Math.max(0, Math.round(bytes / 1024))}Ki`;

/** Nanocores of a metrics quantity ("12345n", "250m", "1"). */
export function nanoCores(q: string | undefined): number {
  if (!q) return 0;
  const n = /^(\d+)n$/.exec(q);
  if (n) return Number(n[1]);
  const u = /^(\d+)u$/.exec(q);
  if (u) return Number(u[1]) * 1000;
  return (cpuMillis(q) ?? 0) * 1e6;
}

/** Average nanocores between two cumulative readings; undefined without a usable earlier one. */
export function rateNanoCores(
  prev: { usageCoreNanoSeconds: number; atMs: number } | undefined,
  cur: { usageCoreNanoSeconds: number; atMs: number },
): number | undefined {
  if (!prev || cur.atMs <= prev.atMs || cur.usageCoreNanoSeconds < prev.usageCoreNanoSeconds)
    return undefined;
  // ns of CPU per ms of wall time, times 1000 ms/s: nanocores
  return ((cur.usageCoreNanoSeconds - prev.usageCoreNanoSeconds) / (cur.atMs - prev.atMs)) * 1e3;
}

/** Pod annotations that set a hollow pod's figures per container (tests steer the HPA with them). */
export const HOLLOW_CPU_ANNOTATION = "metrics.lab.io/hollow-cpu";
export const HOLLOW_MEMORY_ANNOTATION = "metrics.lab.io/hollow-memory";

/** A small stable number in [0, n) from a string: figures that differ per pod but not per read. */
function spread(s: string, n: number): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return (h >>> 0) % n;
}

/**
 * What a hollow node reports (it runs no containers): each container of a Running pod uses
 * the pod's HOLLOW_CPU_ANNOTATION / HOLLOW_MEMORY_ANNOTATION when set, else a few millicores and a
 * few MiB that differ per pod; the node adds an agent's own overhead. Pure.
 */
export function hollowSummary(nodeName: string, pods: V1Pod[], now: number): Summary {
  const time = new Date(now).toISOString();
  const out: PodStats[] = [];
  let cpu = 40e6 + spread(nodeName, 20) * 1e6;
  let mem = 200 * 2 ** 20 + spread(nodeName, 64) * 2 ** 20;
  for (const p of pods) {
    if (p.status?.phase !== "Running" || p.spec?.nodeName !== nodeName) continue;
    const m = p.metadata ?? {};
    const a = m.annotations ?? {};
    const cpuSet = a[HOLLOW_CPU_ANNOTATION] !== undefined ? cpuMillis(a[HOLLOW_CPU_ANNOTATION]) : undefined;
    const memSet =
      a[HOLLOW_MEMORY_ANNOTATION] !== undefined ? memoryBytes(a[HOLLOW_MEMORY_ANNOTATION]) : undefined;
    const containers = (p.spec?.containers ?? []).map((c) => {
      const seed = `${m.uid ?? ""}/${c.name}`;
      const cNano =
        cpuSet !== undefined ? cpuSet * 1e6 : (1 + spread(seed, 4)) * 1e6 + spread(seed + "n", 1e6);
      const cMem = memSet ?? (4 + spread(seed, 12)) * 2 ** 20 + spread(seed + "b", 2 ** 20);
      cpu += cNano;
      mem += cMem;
      return { name: c.name, cpu: { time, usageNanoCores: cNano }, memory: { time, workingSetBytes: cMem } };
    });
    out.push({ podRef: { name: m.name ?? "", namespace: m.namespace ?? "", uid: m.uid ?? "" }, containers });
  }
  return {
    node: { nodeName, cpu: { time, usageNanoCores: cpu }, memory: { time, workingSetBytes: mem } },
    pods: out,
  };
}
