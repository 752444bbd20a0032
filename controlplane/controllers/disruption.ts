/**
 * The disruption controller (kube-controller-manager's): keeps each PodDisruptionBudget's status
 * (expectedPods, desiredHealthy, currentHealthy, disruptionsAllowed, the DisruptionAllowed
 * condition) in step with its pods. Expected pods come from the pods' controllers' scale: a
 * ReplicaSet's Deployment, a ReplicaSet, or any other kind through its scale subresource
 * (StatefulSet, ReplicationController), so new kinds need no code here. Evicted pods recorded in
 * status.disruptedPods by the eviction subresource drop out once their pod is gone or after the
 * deletion timeout.
 */
import type {
  V1Deployment,
  V1OwnerReference,
  V1Pod,
  V1PodDisruptionBudget,
  V1ReplicaSet,
} from "@kubernetes/client-node";
import type { Informer } from "../../api/informer.ts";
import { objectKey } from "../../api/informer.ts";
import { runController } from "../../api/controller.ts";
import { matchesLabels, selectorObjectToRequirements } from "../../api/selectors.ts";
import { WorkQueue, type ReconcileResult } from "../../api/workqueue.ts";
import { stableStringify } from "../../lib/stable-json.ts";
import { budgetStatus, DELETION_TIMEOUT_MS, disruptionCondition, needsScale } from "../disruption/budget.ts";
import type { ObjectWriter } from "../loop-client.ts";
import { isConflict, isNotFound, recordEvent } from "../loop-client.ts";
import { controllerRef } from "./labels.ts";
import { onEvery } from "./enqueue.ts";
import type { ScaleClient } from "./scale-client.ts";

/** A nil selector selects nothing, an empty one every pod (policy/v1). */
export function budgetSelects(
  pdb: V1PodDisruptionBudget,
  labels: Record<string, string> | undefined,
): boolean {
  const sel = pdb.spec?.selector;
  if (!sel) return false;
  return matchesLabels(selectorObjectToRequirements(sel), labels ?? {});
}

export class DisruptionController {
  readonly queue = new WorkQueue({ baseDelayMs: 100, maxDelayMs: 30_000 });

  constructor(
    private readonly budgets: Informer<V1PodDisruptionBudget>,
    private readonly pods: Informer<V1Pod>,
    private readonly replicaSets: Informer<V1ReplicaSet>,
    private readonly deployments: Informer<V1Deployment>,
    private readonly w: ObjectWriter,
    private readonly scales: ScaleClient,
    private readonly onError?: (err: unknown) => void,
    private readonly resyncMs = 30_000,
  ) {
    const enqueue = (b: V1PodDisruptionBudget): void => this.queue.add(objectKey(b));
    budgets.on(onEvery(enqueue));
    const forPod = (p: V1Pod): void => {
      for (const b of this.budgets.list(p.metadata?.namespace))
        if (budgetSelects(b, p.metadata?.labels)) enqueue(b);
    };
    pods.on({
      add: forPod,
      update: (old, p) => {
        forPod(p);
        if (stableStringify(old.metadata?.labels) !== stableStringify(p.metadata?.labels)) forPod(old);
      },
      delete: forPod,
    });
    // A scale change changes expected pods of maxUnavailable and percentage budgets.
    const forNamespace = (o: { metadata?: { namespace?: string } }): void => {
      for (const b of this.budgets.list(o.metadata?.namespace)) if (needsScale(b)) enqueue(b);
    };
    replicaSets.on(onEvery(forNamespace));
    deployments.on(onEvery(forNamespace));
  }

  run(signal: AbortSignal): Promise<void> {
    return runController(signal, {
      queue: this.queue,
      reconcile: (k) => this.reconcile(k),
      workers: 2,
      initialKeys: [...this.budgets.cache.values()].map(objectKey),
      // other kinds' scale (StatefulSets, ...) has no informer here: read again now and then
      resync: { everyMs: this.resyncMs, keys: () => [...this.budgets.cache.values()].map(objectKey) },
      onError: this.onError,
    });
  }

  /** The replicas of the controller behind `ref`, keyed by that controller's uid (two RSs of one Deployment count once). */
  private async controllerScale(
    ns: string,
    ref: V1OwnerReference,
  ): Promise<{ uid: string; replicas: number }> {
    if (ref.kind === "ReplicaSet" && ref.apiVersion === "apps/v1") {
      const rs = this.replicaSets.get(`${ns}/${ref.name}`);
      if (rs && rs.metadata?.uid === ref.uid) {
        const dref = controllerRef(rs);
        if (dref?.kind === "Deployment") {
          const d = this.deployments.get(`${ns}/${dref.name}`);
          if (d && d.metadata?.uid === dref.uid) return { uid: dref.uid, replicas: d.spec?.replicas ?? 1 };
        }
        return { uid: ref.uid, replicas: rs.spec?.replicas ?? 1 };
      }
    }
    if (ref.kind === "Deployment" && ref.apiVersion === "apps/v1") {
      const d = this.deployments.get(`${ns}/${ref.name}`);
      if (d && d.metadata?.uid === ref.uid) return { uid: ref.uid, replicas: d.spec?.replicas ?? 1 };
    }
    const scale = await this.scales.getScale({
      apiVersion: ref.apiVersion,
      kind: ref.kind,
      namespace: ns,
      name: ref.name,
    });
    return { uid: ref.uid, replicas: scale.replicas };
  }

  /** Sum of the scale of every controller of the pods, or why it cannot be known. */
  private async expectedFromScale(ns: string, pods: V1Pod[]): Promise<number | string> {
    const seen = new Map<string, number>();
    const checked = new Set<string>();
    for (const p of pods) {
      const ref = controllerRef(p);
      if (!ref) return `found no controllers for pod "${p.metadata?.name}"`;
      if (checked.has(ref.uid)) continue;
      checked.add(ref.uid);
      try {
        const s = await this.controllerScale(ns, ref);
        seen.set(s.uid, s.replicas);
      } catch (err) {
        if (!isNotFound(err)) throw err;
        return `found no controllers for pod "${p.metadata?.name}"`;
      }
    }
    return [...seen.values()].reduce((a, b) => a + b, 0);
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const pdb = this.budgets.get(key);
    if (!pdb) return;
    const ns = pdb.metadata?.namespace ?? "default";
    const now = Date.now();
    const pods = this.pods.list(ns).filter((p) => budgetSelects(pdb, p.metadata?.labels));
    let failure: string | undefined;
    let expected: number | undefined;
    if (needsScale(pdb)) {
      const e = await this.expectedFromScale(ns, pods);
      if (typeof e === "string") failure = e;
      else expected = e;
    }
    // Evictions recorded by the eviction subresource stay until their pod is gone or the timeout passes.
    const names = new Set(pods.filter((p) => !p.metadata?.deletionTimestamp).map((p) => p.metadata?.name));
    const disrupted: Record<string, string> = {};
    let nextExpiry = Infinity;
    for (const [pod, at] of Object.entries((pdb.status?.disruptedPods ?? {}) as Record<string, unknown>)) {
      const t = typeof at === "string" ? Date.parse(at) : NaN;
      if (!names.has(pod) || !(t + DELETION_TIMEOUT_MS > now)) continue;
      disrupted[pod] = at as string;
      nextExpiry = Math.min(nextExpiry, t + DELETION_TIMEOUT_MS);
    }
    const withDisrupted = {
      ...pdb,
      status: { ...pdb.status, disruptedPods: disrupted },
    } as unknown as V1PodDisruptionBudget;
    const numbers = budgetStatus(withDisrupted, pods, expected, now);
    if (failure !== undefined) numbers.disruptionsAllowed = 0;
    const generation = pdb.metadata?.generation;
    const status = {
      ...numbers,
      observedGeneration: generation,
      ...(Object.keys(disrupted).length ? { disruptedPods: disrupted } : {}),
      conditions: [
        disruptionCondition(numbers.disruptionsAllowed, pdb.status?.conditions, generation, failure),
      ],
    };
    if (stableStringify(status) !== stableStringify(pdb.status)) {
      try {
        await this.w.updateStatus("poddisruptionbudgets", ns, {
          ...pdb,
          status,
        } as unknown as V1PodDisruptionBudget);
      } catch (err) {
        if (isConflict(err)) return { requeueAfterMs: 100 };
        if (!isNotFound(err)) throw err;
      }
      const event = (type: "Normal" | "Warning", reason: string, message: string) =>
        recordEvent(
          this.w,
          "controllermanager",
          { ...pdb, apiVersion: "policy/v1", kind: "PodDisruptionBudget" },
          type,
          reason,
          message,
        );
      if (failure !== undefined)
        await event(
          "Warning",
          "CalculateExpectedPodCountFailed",
          `Failed to calculate the number of expected pods: ${failure}`,
        );
      else if (pods.length === 0 && (pdb.status?.expectedPods ?? -1) !== 0)
        await event("Normal", "NoPods", "No matching pods found");
    }
    if (nextExpiry !== Infinity) return { requeueAfterMs: Math.max(100, nextExpiry - now + 50) };
  }
}
