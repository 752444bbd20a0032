/**
 * The HorizontalPodAutoscaler controller: every sync period each HPA reads its target's scale,
 * the CPU usage of the target's pods from metrics.k8s.io, recommends a replica count
 * (hpa-decision.ts), and writes the target's scale when it changes, with upstream's conditions
 * (AbleToScale, ScalingActive, ScalingLimited) and events (SuccessfulRescale,
 * FailedGetResourceMetric, FailedGetScale, FailedRescale). Recommendations and scale events are
 * kept in memory per HPA, as upstream does: a new leader starts with an empty window.
 */
import type {
  V1Pod,
  V2HorizontalPodAutoscaler,
  V2HorizontalPodAutoscalerCondition,
} from "@kubernetes/client-node";
import type { Informer } from "../../api/informer.ts";
import { objectKey } from "../../api/informer.ts";
import { runOverCache } from "../../api/controller.ts";
import { nanoCores } from "../../api/metrics.ts";
import { matchesLabels, parseLabelSelector } from "../../api/selectors.ts";
import { WorkQueue, type ReconcileResult } from "../../api/workqueue.ts";
import { stableStringify } from "../../lib/stable-json.ts";
import type { ObjectWriter } from "../loop-client.ts";
import { isConflict, isNotFound, recordEvent } from "../loop-client.ts";
import { cpuReplicas, normalize, rules, type ScaleEvent } from "./hpa-decision.ts";
import type { PodMetricsReader, ScaleClient, ScaleTarget } from "./scale-client.ts";

/** Upstream's --horizontal-pod-autoscaler-sync-period. */
export const HPA_SYNC_PERIOD_MS = 15_000;

type Condition = V2HorizontalPodAutoscalerCondition;
const nowText = (): string => new Date().toISOString().replace(/\.\d+Z$/, "Z");

function setCondition(
  list: Condition[],
  type: string,
  status: "True" | "False",
  reason: string,
  message: string,
): void {
  const i = list.findIndex((c) => c.type === type);
  const old = list[i];
  const c = {
    type,
    status,
    reason,
    message,
    lastTransitionTime: (old && old.status === status
      ? old.lastTransitionTime
      : nowText()) as unknown as Date,
  };
  if (i >= 0) list[i] = c;
  else list.push(c);
}

export class HorizontalPodAutoscalerController {
  readonly queue = new WorkQueue({ baseDelayMs: 500, maxDelayMs: 30_000 });
  private readonly history = new Map<string, { at: number; replicas: number }[]>();
  private readonly events = new Map<string, ScaleEvent[]>();

  constructor(
    private readonly hpas: Informer<V2HorizontalPodAutoscaler>,
    private readonly pods: Informer<V1Pod>,
    private readonly w: ObjectWriter,
    private readonly scales: ScaleClient,
    private readonly metrics: PodMetricsReader,
    private readonly onError?: (err: unknown) => void,
    private readonly syncPeriodMs = HPA_SYNC_PERIOD_MS,
  ) {
    hpas.on({
      add: (h) => this.queue.add(objectKey(h)),
      update: (o, n) => {
        if (stableStringify(o.spec) !== stableStringify(n.spec)) this.queue.add(objectKey(n));
      },
      delete: (h) => {
        this.history.delete(objectKey(h));
        this.events.delete(objectKey(h));
      },
    });
  }

  run(signal: AbortSignal): Promise<void> {
    return runOverCache(signal, this, this.hpas.cache, { workers: 2, onError: this.onError });
  }

  private event(
    hpa: V2HorizontalPodAutoscaler,
    type: "Normal" | "Warning",
    reason: string,
    message: string,
  ): Promise<void> {
    return recordEvent(
      this.w,
      "horizontal-pod-autoscaler",
      { ...hpa, apiVersion: "autoscaling/v2", kind: "HorizontalPodAutoscaler" },
      type,
      reason,
      message,
    );
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const hpa = this.hpas.get(key);
    if (!hpa) return;
    const next = { requeueAfterMs: this.syncPeriodMs };
    const ns = hpa.metadata?.namespace ?? "default";
    const ref = hpa.spec?.scaleTargetRef;
    const target: ScaleTarget = {
      apiVersion: ref?.apiVersion ?? "",
      kind: ref?.kind ?? "",
      namespace: ns,
      name: ref?.name ?? "",
    };
    const conditions: Condition[] = structuredClone(hpa.status?.conditions ?? []);
    const status = {
      ...(hpa.status ?? {}),
      observedGeneration: hpa.metadata?.generation,
      conditions,
    } as NonNullable<V2HorizontalPodAutoscaler["status"]>;
    let scale;
    try {
      scale = await this.scales.getScale(target);
    } catch (err) {
      const msg = `the HPA controller was unable to get the target's current scale: ${(err as Error).message}`;
      setCondition(conditions, "AbleToScale", "False", "FailedGetScale", msg);
      await this.event(hpa, "Warning", "FailedGetScale", (err as Error).message);
      await this.writeStatus(key, hpa, status);
      return next;
    }
    const current = scale.replicas;
    status.currentReplicas = scale.statusReplicas;
    const min = hpa.spec?.minReplicas ?? 1;
    const max = hpa.spec?.maxReplicas ?? 1;
    let recommended = current;
    let metricName = "";
    if (current === 0 && min !== 0) {
      setCondition(
        conditions,
        "ScalingActive",
        "False",
        "ScalingDisabled",
        "scaling is disabled since the replica count of the target is zero",
      );
      status.desiredReplicas = 0;
      await this.writeStatus(key, hpa, status);
      return next;
    }
    const cpu = (hpa.spec?.metrics ?? []).find(
      (m) => m.type === "Resource" && m.resource?.name === "cpu" && m.resource.target?.type === "Utilization",
    );
    if (cpu) {
      const targetUtil = cpu.resource!.target!.averageUtilization ?? 80;
      try {
        const sel = parseLabelSelector(scale.selector);
        const pods = this.pods.list(ns).filter((p) => matchesLabels(sel, p.metadata?.labels));
        const usage = new Map<string, number>();
        for (const m of await this.metrics.list(ns, scale.selector))
          usage.set(
            m.metadata.name,
            m.containers.reduce((a, c) => a + nanoCores(c.usage.cpu) / 1e6, 0),
          );
        const r = cpuReplicas(current, targetUtil, pods, usage);
        recommended = r.replicas;
        metricName = "cpu resource utilization (percentage of request)";
        status.currentMetrics = [
          {
            type: "Resource",
            resource: {
              name: "cpu",
              current: { averageUtilization: r.utilization, averageValue: `${r.averageMillis}m` },
            },
          },
        ];
        setCondition(
          conditions,
          "ScalingActive",
          "True",
          "ValidMetricFound",
          `the HPA was able to successfully calculate a replica count from ${metricName}`,
        );
      } catch (err) {
        const msg = `failed to get cpu utilization: ${(err as Error).message}`;
        setCondition(
          conditions,
          "ScalingActive",
          "False",
          "FailedGetResourceMetric",
          `the HPA was unable to compute the replica count: ${msg}`,
        );
        setCondition(
          conditions,
          "AbleToScale",
          "True",
          "SucceededGetScale",
          "the HPA controller was able to get the target's current scale",
        );
        await this.event(hpa, "Warning", "FailedGetResourceMetric", msg);
        status.desiredReplicas = current;
        await this.writeStatus(key, hpa, status);
        return next;
      }
    }
    const now = Date.now();
    const history = (this.history.get(key) ?? []).filter(
      (h) =>
        h.at >
        now -
          Math.max(
            rules(hpa, "up").stabilizationWindowSeconds,
            rules(hpa, "down").stabilizationWindowSeconds,
          ) *
            1000,
    );
    const events = (this.events.get(key) ?? []).filter((e) => e.at > now - 1800_000);
    const n = normalize(hpa, current, recommended, history, events, now);
    history.push({ at: now, replicas: recommended });
    this.history.set(key, history);
    const desired = n.replicas;
    if (n.limitedBy === "TooManyReplicas")
      setCondition(
        conditions,
        "ScalingLimited",
        "True",
        "TooManyReplicas",
        "the desired replica count is more than the maximum replica count",
      );
    else if (n.limitedBy === "TooFewReplicas")
      setCondition(
        conditions,
        "ScalingLimited",
        "True",
        "TooFewReplicas",
        "the desired replica count is less than the minimum replica count",
      );
    else if (n.limitedBy === "ScaleUpLimit")
      setCondition(
        conditions,
        "ScalingLimited",
        "True",
        "ScaleUpLimit",
        "the desired replica count is increasing faster than the maximum scale rate",
      );
    else if (n.limitedBy === "ScaleDownLimit")
      setCondition(
        conditions,
        "ScalingLimited",
        "True",
        "ScaleDownLimit",
        "the desired replica count is decreasing faster than the maximum scale rate",
      );
    else
      setCondition(
        conditions,
        "ScalingLimited",
        "False",
        "DesiredWithinRange",
        "the desired count is within the acceptable range",
      );
    status.desiredReplicas = desired;
    if (desired !== current) {
      try {
        await this.scales.setScale(target, desired);
      } catch (err) {
        const msg = `the HPA controller was unable to update the target scale: ${(err as Error).message}`;
        setCondition(conditions, "AbleToScale", "False", "FailedUpdateScale", msg);
        await this.event(
          hpa,
          "Warning",
          "FailedRescale",
          `New size: ${desired}; reason: ${(err as Error).message}`,
        );
        await this.writeStatus(key, hpa, status);
        return next;
      }
      events.push({ at: now, delta: desired - current });
      this.events.set(key, events);
      status.lastScaleTime = nowText() as unknown as Date;
      setCondition(
        conditions,
        "AbleToScale",
        "True",
        "SucceededRescale",
        `the HPA controller was able to update the target scale to ${desired}`,
      );
      const why =
        current > max
          ? "Current number of replicas above Spec.MaxReplicas"
          : current < min
            ? "Current number of replicas below Spec.MinReplicas"
            : desired > current
              ? `${metricName} above target`
              : "All metrics below target";
      await this.event(hpa, "Normal", "SuccessfulRescale", `New size: ${desired}; reason: ${why}`);
    } else if (n.stabilized && recommended < current)
      setCondition(
        conditions,
        "AbleToScale",
        "True",
        "ScaleDownStabilized",
        "recent recommendations were higher than current one, applying the highest recent recommendation",
      );
    else
      setCondition(
        conditions,
        "AbleToScale",
        "True",
        "ReadyForNewScale",
        "recommended size matches current size",
      );
    await this.writeStatus(key, hpa, status);
    return next;
  }

  private async writeStatus(
    key: string,
    hpa: V2HorizontalPodAutoscaler,
    status: NonNullable<V2HorizontalPodAutoscaler["status"]>,
  ): Promise<void> {
    if (stableStringify(status) === stableStringify(hpa.status)) return;
    try {
      await this.w.updateStatus("horizontalpodautoscalers", hpa.metadata?.namespace, { ...hpa, status });
    } catch (err) {
      if (isConflict(err)) this.queue.addAfter(key, 200);
      else if (!isNotFound(err)) throw err;
    }
  }
}
