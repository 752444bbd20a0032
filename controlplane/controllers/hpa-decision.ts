/**
 * The HorizontalPodAutoscaler's arithmetic, pure (upstream's replica_calculator.go and the
 * behavior handling of horizontal.go): CPU utilisation against requests with the 10% tolerance,
 * missing and unready pods filled in the direction that damps a change, the stabilisation window
 * over past recommendations, the scale-up and scale-down rate policies, and min/max.
 */
import type { V1Pod, V2HorizontalPodAutoscaler, V2HPAScalingRules } from "@kubernetes/client-node";
import { cpuMillis } from "../../lib/quantity.ts";

export const TOLERANCE = 0.1;

export interface UtilizationResult {
  replicas: number;
  /** Average utilisation of the ready pods with metrics, in percent of their requests. */
  utilization: number;
  /** Average usage per pod in millicores. */
  averageMillis: number;
}

const ready = (p: V1Pod): boolean =>
  (p.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");

/** The pod's CPU request in millicores, or the name of the container without one. */
export function podCpuRequest(p: V1Pod): number | string {
  let sum = 0;
  for (const c of p.spec?.containers ?? []) {
    const r = cpuMillis(c.resources?.requests?.cpu as string | undefined);
    if (r === undefined) return c.name;
    sum += r;
  }
  return sum;
}

/**
 * Replicas for a CPU utilisation target (GetResourceReplicas): `usage` maps pod names to their
 * millicores. Throws with upstream's texts when requests or metrics are missing.
 */
export function cpuReplicas(
  currentReplicas: number,
  targetUtilization: number,
  pods: V1Pod[],
  usage: Map<string, number>,
): UtilizationResult {
  const live = pods.filter((p) => !p.metadata?.deletionTimestamp && p.status?.phase !== "Failed");
  if (live.length === 0) throw new Error("no pods returned by selector while calculating replica count");
  const requests = new Map<string, number>();
  for (const p of live) {
    const r = podCpuRequest(p);
    if (typeof r === "string")
      throw new Error(`missing request for cpu in container ${r} of Pod ${p.metadata?.name}`);
    requests.set(p.metadata?.name ?? "", r);
  }
  const withMetrics: string[] = [];
  const missing: string[] = [];
  const unready: string[] = [];
  for (const p of live) {
    const name = p.metadata?.name ?? "";
    if (!usage.has(name)) missing.push(name);
    else if (!ready(p) || p.status?.phase !== "Running") unready.push(name);
    else withMetrics.push(name);
  }
  if (withMetrics.length === 0 && unready.length === 0)
    throw new Error("unable to get metrics for resource cpu: no metrics returned from resource metrics API");
  const sums = (names: string[], fill?: (n: string) => number): { use: number; req: number } => {
    let use = 0;
    let req = 0;
    for (const n of names) {
      use += fill ? fill(n) : usage.get(n)!;
      req += requests.get(n)!;
    }
    return { use, req };
  };
  const base = sums(withMetrics);
  if (base.req === 0) throw new Error("unable to get metrics for resource cpu: no ready pods with metrics");
  const utilization = Math.round((base.use * 100) / base.req);
  const averageMillis = Math.round(base.use / withMetrics.length);
  const ratio = utilization / targetUtilization;
  const keep = { replicas: currentReplicas, utilization, averageMillis };
  if (missing.length === 0 && unready.length === 0) {
    if (Math.abs(1 - ratio) <= TOLERANCE) return keep;
    return { replicas: Math.ceil(ratio * withMetrics.length), utilization, averageMillis };
  }
  // Missing pods count as idle when scaling up and as at their request when scaling down; unready
  // pods count as idle when scaling up and are left out when scaling down.
  const up = ratio > 1;
  const filled = [...withMetrics];
  let use = base.use;
  let req = base.req;
  for (const n of missing) {
    use += up ? 0 : requests.get(n)!;
    req += requests.get(n)!;
    filled.push(n);
  }
  if (up)
    for (const n of unready) {
      req += requests.get(n)!;
      filled.push(n);
    }
  const newRatio = (use * 100) / req / targetUtilization;
  if (Math.abs(1 - newRatio) <= TOLERANCE || (ratio < 1 && newRatio > 1) || (ratio > 1 && newRatio < 1))
    return keep;
  const replicas = Math.ceil(newRatio * filled.length);
  if ((newRatio < 1 && replicas > currentReplicas) || (newRatio > 1 && replicas < currentReplicas))
    return keep;
  return { replicas, utilization, averageMillis };
}

export interface ScaleEvent {
  at: number;
  delta: number;
}

const DEFAULT_UP: Required<
  Pick<V2HPAScalingRules, "stabilizationWindowSeconds" | "selectPolicy" | "policies">
> = {
  stabilizationWindowSeconds: 0,
  selectPolicy: "Max",
  policies: [
    { type: "Pods", value: 4, periodSeconds: 15 },
    { type: "Percent", value: 100, periodSeconds: 15 },
  ],
};
const DEFAULT_DOWN: typeof DEFAULT_UP = {
  stabilizationWindowSeconds: 300,
  selectPolicy: "Max",
  policies: [{ type: "Percent", value: 100, periodSeconds: 15 }],
};

export function rules(hpa: V2HorizontalPodAutoscaler, dir: "up" | "down"): typeof DEFAULT_UP {
  const given = dir === "up" ? hpa.spec?.behavior?.scaleUp : hpa.spec?.behavior?.scaleDown;
  const d = dir === "up" ? DEFAULT_UP : DEFAULT_DOWN;
  return {
    stabilizationWindowSeconds: given?.stabilizationWindowSeconds ?? d.stabilizationWindowSeconds,
    selectPolicy: given?.selectPolicy ?? d.selectPolicy,
    policies: given?.policies?.length ? given.policies : d.policies,
  };
}

/** Replicas added (or removed) by the events inside `periodSeconds`. */
function changedIn(events: ScaleEvent[], periodSeconds: number, now: number, up: boolean): number {
  let n = 0;
  for (const e of events)
    if (e.at > now - periodSeconds * 1000 && (up ? e.delta > 0 : e.delta < 0)) n += Math.abs(e.delta);
  return n;
}

export interface Normalized {
  replicas: number;
  /** Why the recommendation was changed: for the AbleToScale / ScalingLimited conditions. */
  stabilized: boolean;
  limitedBy?: "ScaleUpLimit" | "ScaleDownLimit" | "TooManyReplicas" | "TooFewReplicas";
}

/**
 * The limit a behavior's selectPolicy picks among its policies' limits: Max (the default) the one
 * allowing the most change (`most`), Min the least (`least`), Disabled no change at all.
 */
function selectedLimit(
  selectPolicy: string | undefined,
  current: number,
  limits: number[],
  most: (...values: number[]) => number,
  least: (...values: number[]) => number,
): number {
  if (selectPolicy === "Disabled") return current;
  return selectPolicy === "Min" ? least(...limits) : most(...limits);
}

/** Stabilisation, rate policies and min/max applied to a recommendation (normalizeDesiredReplicasWithBehaviors). */
export function normalize(
  hpa: V2HorizontalPodAutoscaler,
  current: number,
  recommended: number,
  history: { at: number; replicas: number }[],
  events: ScaleEvent[],
  now: number,
): Normalized {
  const up = rules(hpa, "up");
  const down = rules(hpa, "down");
  let upRec = recommended;
  let downRec = recommended;
  for (const r of history) {
    if (r.at > now - up.stabilizationWindowSeconds * 1000) upRec = Math.min(upRec, r.replicas);
    if (r.at > now - down.stabilizationWindowSeconds * 1000) downRec = Math.max(downRec, r.replicas);
  }
  let replicas = Math.min(Math.max(current, upRec), downRec);
  const stabilized = replicas !== recommended;
  let limitedBy: Normalized["limitedBy"];
  if (replicas > current) {
    const limits = up.policies.map((p) => {
      const start = current - changedIn(events, p.periodSeconds, now, true);
      return p.type === "Pods" ? start + p.value : Math.ceil(start * (1 + p.value / 100));
    });
    const limit = selectedLimit(up.selectPolicy, current, limits, Math.max, Math.min);
    if (replicas > limit) {
      replicas = Math.max(limit, current);
      limitedBy = "ScaleUpLimit";
    }
  } else if (replicas < current) {
    const limits = down.policies.map((p) => {
      const start = current + changedIn(events, p.periodSeconds, now, false);
      return p.type === "Pods" ? start - p.value : Math.floor(start * (1 - p.value / 100));
    });
    const limit = selectedLimit(down.selectPolicy, current, limits, Math.min, Math.max);
    if (replicas < limit) {
      replicas = Math.min(limit, current);
      limitedBy = "ScaleDownLimit";
    }
  }
  const min = hpa.spec?.minReplicas ?? 1;
  const max = hpa.spec?.maxReplicas ?? 1;
  if (replicas > max) {
    replicas = max;
    limitedBy = "TooManyReplicas";
  } else if (replicas < min) {
    replicas = min;
    limitedBy = "TooFewReplicas";
  }
  return { replicas, stabilized, ...(limitedBy ? { limitedBy } : {}) };
}
