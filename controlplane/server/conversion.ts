/**
 * Versions served by conversion from the stored one: autoscaling/v1 HorizontalPodAutoscalers are
 * stored as autoscaling/v2 (as kube-apiserver does). What v1 cannot say (metrics other than CPU,
 * behavior, conditions) rides in the `autoscaling.alpha.kubernetes.io/*` annotations upstream
 * uses, so a v1 read-modify-write keeps it. The conversion wraps the Registry: a handler given a
 * v1 route reads and writes v1 objects while the store only ever holds v2.
 */
import { findResource, groupVersion, type ResourceInfo } from "../../api/resources.ts";
import type { KObject, Registry, WatchEvent } from "../registry.ts";

type Obj = Record<string, unknown>;
const o = (v: unknown): Obj | undefined =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;

const A = "autoscaling.alpha.kubernetes.io/";
const METRICS = `${A}metrics`;
const BEHAVIOR = `${A}behavior`;
const CONDITIONS = `${A}conditions`;
const CURRENT = `${A}current-metrics`;

const isCpuUtilization = (m: unknown): boolean =>
  o(m)?.type === "Resource" &&
  o(o(m)?.resource)?.name === "cpu" &&
  o(o(o(m)?.resource)?.target)?.type === "Utilization";

function parse(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** autoscaling/v2 → autoscaling/v1. */
export function hpaV2toV1(v2: KObject): KObject {
  const spec = o(v2.spec) ?? {};
  const status = o(v2.status) ?? {};
  const annotations: Record<string, string> = { ...(v2.metadata.annotations ?? {}) };
  const metrics = Array.isArray(spec.metrics) ? spec.metrics : [];
  const cpu = metrics.find(isCpuUtilization);
  const others = metrics.filter((m) => m !== cpu);
  if (others.length) annotations[METRICS] = JSON.stringify(others);
  if (spec.behavior !== undefined) annotations[BEHAVIOR] = JSON.stringify(spec.behavior);
  if (Array.isArray(status.conditions) && status.conditions.length)
    annotations[CONDITIONS] = JSON.stringify(status.conditions);
  const current = Array.isArray(status.currentMetrics) ? status.currentMetrics : [];
  const curCpu = current.find((m) => o(m)?.type === "Resource" && o(o(m)?.resource)?.name === "cpu");
  const curOthers = current.filter((m) => m !== curCpu);
  if (curOthers.length) annotations[CURRENT] = JSON.stringify(curOthers);
  const v1Spec: Obj = {
    scaleTargetRef: spec.scaleTargetRef,
    minReplicas: spec.minReplicas,
    maxReplicas: spec.maxReplicas,
  };
  const util = o(o(o(cpu)?.resource)?.target)?.averageUtilization;
  if (util !== undefined) v1Spec.targetCPUUtilizationPercentage = util;
  const v1Status: Obj = {
    currentReplicas: status.currentReplicas ?? 0,
    desiredReplicas: status.desiredReplicas ?? 0,
  };
  if (status.observedGeneration !== undefined) v1Status.observedGeneration = status.observedGeneration;
  if (status.lastScaleTime !== undefined) v1Status.lastScaleTime = status.lastScaleTime;
  const curUtil = o(o(o(curCpu)?.resource)?.current)?.averageUtilization;
  if (curUtil !== undefined) v1Status.currentCPUUtilizationPercentage = curUtil;
  const meta = { ...v2.metadata };
  if (Object.keys(annotations).length) meta.annotations = annotations;
  return { ...v2, apiVersion: "autoscaling/v1", metadata: meta, spec: v1Spec, status: v1Status };
}

/** autoscaling/v1 → autoscaling/v2 (annotations from hpaV2toV1 restored and removed). */
export function hpaV1toV2(v1: KObject): KObject {
  const spec = o(v1.spec) ?? {};
  const status = o(v1.status) ?? {};
  const annotations: Record<string, string> = { ...(v1.metadata?.annotations ?? {}) };
  const take = (k: string): unknown => {
    const v = parse(annotations[k]);
    delete annotations[k];
    return v;
  };
  const others = take(METRICS);
  const behavior = take(BEHAVIOR);
  const conditions = take(CONDITIONS);
  const curOthers = take(CURRENT);
  const metrics: unknown[] = [];
  if (spec.targetCPUUtilizationPercentage !== undefined)
    metrics.push({
      type: "Resource",
      resource: {
        name: "cpu",
        target: { type: "Utilization", averageUtilization: spec.targetCPUUtilizationPercentage },
      },
    });
  if (Array.isArray(others)) metrics.push(...others);
  const v2Spec: Obj = {
    scaleTargetRef: spec.scaleTargetRef,
    minReplicas: spec.minReplicas,
    maxReplicas: spec.maxReplicas,
  };
  if (metrics.length) v2Spec.metrics = metrics;
  if (o(behavior)) v2Spec.behavior = behavior;
  const v2Status: Obj = {};
  for (const k of ["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"])
    if (status[k] !== undefined) v2Status[k] = status[k];
  const current: unknown[] = [];
  if (status.currentCPUUtilizationPercentage !== undefined)
    current.push({
      type: "Resource",
      resource: { name: "cpu", current: { averageUtilization: status.currentCPUUtilizationPercentage } },
    });
  if (Array.isArray(curOthers)) current.push(...curOthers);
  if (current.length) v2Status.currentMetrics = current;
  if (Array.isArray(conditions)) v2Status.conditions = conditions;
  const meta = { ...(v1.metadata ?? {}) };
  if (Object.keys(annotations).length) meta.annotations = annotations;
  else delete meta.annotations;
  return { ...v1, apiVersion: "autoscaling/v2", metadata: meta, spec: v2Spec, status: v2Status };
}

interface Conversion {
  storage: ResourceInfo;
  toStorage(obj: KObject): KObject;
  fromStorage(obj: KObject): KObject;
}

/** How a served version converts to its storage version; undefined when it is the storage version. */
export function conversionFor(info: ResourceInfo): Conversion | undefined {
  if (info.group === "autoscaling" && info.version === "v1" && info.kind === "HorizontalPodAutoscaler")
    return {
      storage: findResource("autoscaling", "v2", info.plural)!,
      toStorage: hpaV1toV2,
      fromStorage: hpaV2toV1,
    };
  return undefined;
}

/** The registry as a handler of `served` sees it: objects in, objects out, in the served version. */
export function convertingRegistry(registry: Registry, served: ResourceInfo): Registry {
  const c = conversionFor(served);
  if (!c) return registry;
  const is = (info: ResourceInfo): boolean =>
    groupVersion(info) === groupVersion(served) && info.plural === served.plural;
  const out = (x: KObject): KObject => c.fromStorage(x);
  const view = Object.create(registry) as Registry;
  Object.assign(view, {
    get: async (info: ResourceInfo, ns: string | undefined, name: string) =>
      is(info) ? out(await registry.get(c.storage, ns, name)) : registry.get(info, ns, name),
    list: async (
      info: ResourceInfo,
      ...rest: Parameters<Registry["list"]> extends [unknown, ...infer R] ? R : never
    ) => {
      if (!is(info)) return registry.list(info, ...rest);
      const page = await registry.list(c.storage, ...rest);
      return { ...page, items: page.items.map(out) };
    },
    create: async (info: ResourceInfo, ns: string | undefined, body: KObject, dryRun?: boolean) =>
      is(info)
        ? out(await registry.create(c.storage, ns, c.toStorage(body), dryRun))
        : registry.create(info, ns, body, dryRun),
    update: async (
      info: ResourceInfo,
      current: KObject,
      next: KObject,
      mode: Parameters<Registry["update"]>[3],
      dryRun?: boolean,
    ) =>
      is(info)
        ? out(await registry.update(c.storage, c.toStorage(current), c.toStorage(next), mode, dryRun))
        : registry.update(info, current, next, mode, dryRun),
    delete: async (
      info: ResourceInfo,
      ...rest: Parameters<Registry["delete"]> extends [unknown, ...infer R] ? R : never
    ) => (is(info) ? out(await registry.delete(c.storage, ...rest)) : registry.delete(info, ...rest)),
    watch: (
      info: ResourceInfo,
      ns: string | undefined,
      sel: Parameters<Registry["watch"]>[2],
      rv: string | undefined,
      send: (ev: WatchEvent) => void,
      onEnd: Parameters<Registry["watch"]>[5],
    ) =>
      is(info)
        ? registry.watch(
            c.storage,
            ns,
            sel,
            rv,
            (ev) =>
              send(
                ev.type === "ADDED" || ev.type === "MODIFIED" || ev.type === "DELETED"
                  ? { ...ev, object: out(ev.object as KObject) }
                  : ev,
              ),
            onEnd,
          )
        : registry.watch(info, ns, sel, rv, send, onEnd),
  });
  return view;
}
