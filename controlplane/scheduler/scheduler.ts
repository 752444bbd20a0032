/**
 * The scheduler loop: informers on pods and nodes, a queue of pending pod keys, and a reconcile
 * that decides (pure `scheduleDecision`) and binds through pods/binding. Bindings it made are
 * "assumed" into its own accounting until the watch shows them, so a burst of pods does not
 * overcommit a node between bind and watch event. A pod that fits nowhere gets a FailedScheduling
 * event and the condition PodScheduled=False (reason Unschedulable, the same message) through
 * pods/status, each written only when the message changes.
 */
import type { V1Node, V1PersistentVolumeClaim, V1Pod, V1PodCondition } from "@kubernetes/client-node";
import { Informer, objectKey, splitKey } from "../../api/informer.ts";
import { RESOURCES } from "../../api/resources.ts";
import { runController } from "../../api/controller.ts";
import { WorkQueue } from "../../api/workqueue.ts";
import type { ListWatchFactory, ObjectWriter } from "../loop-client.ts";
import { isConflict, isNotFound, recordEvent } from "../loop-client.ts";
import type { ClaimLookup, NodeUsage } from "./decision.ts";
import { addPodToUsage, needsScheduling, podClaims, scheduleDecision, usageByNode } from "./decision.ts";

/**
 * The claim as the API has it, or undefined when it does not exist. While lab-server serves no
 * PersistentVolumeClaims, no claim exists: a pod that needs one stays unschedulable, as upstream
 * keeps a pod whose claim is missing.
 */
export async function fetchClaim(
  writer: ObjectWriter,
  namespace: string,
  name: string,
): Promise<V1PersistentVolumeClaim | undefined> {
  if (!RESOURCES.some((r) => r.plural === "persistentvolumeclaims")) return undefined;
  return writer.get<V1PersistentVolumeClaim>("persistentvolumeclaims", namespace, name);
}

/** The pod's PodScheduled=False condition for `message`, or undefined when the pod has it already. */
export function unschedulableCondition(pod: V1Pod, message: string, now: Date): V1PodCondition | undefined {
  const cur = pod.status?.conditions?.find((c) => c.type === "PodScheduled");
  if (cur?.status === "False" && cur.reason === "Unschedulable" && cur.message === message) return undefined;
  return {
    type: "PodScheduled",
    status: "False",
    reason: "Unschedulable",
    message,
    lastProbeTime: null as unknown as Date,
    // The transition is when the status last changed, not when the message did.
    lastTransitionTime:
      cur?.status === "False" && cur.lastTransitionTime
        ? cur.lastTransitionTime
        : (now.toISOString().replace(/\.\d+Z$/, "Z") as unknown as Date),
  };
}

export interface SchedulerOptions {
  schedulerName?: string;
  /** Retry delay for a pod that fits nowhere, besides the retry on any node change. */
  unschedulableRetryMs?: number;
  /** Bindings in flight at once (default 16); decisions stay sequential. */
  workers?: number;
  /** Informer errors, and failed reconciles as one Error `namespace/name: message`. */
  onError?: (err: unknown) => void;
}

export class Scheduler {
  readonly pods: Informer<V1Pod>;
  readonly nodes: Informer<V1Node>;
  readonly queue = new WorkQueue({ baseDelayMs: 100, maxDelayMs: 10_000 });
  /** Pods bound by us that the pod cache does not show bound yet. */
  private assumed = new Map<string, V1Pod>();
  private usage: Map<string, NodeUsage> | undefined;
  private unschedulable = new Set<string>();
  /** Last FailedScheduling message per pod. */
  private lastFailure = new Map<string, string>();
  bound = 0;

  constructor(
    lw: ListWatchFactory,
    private readonly writer: ObjectWriter,
    private readonly opts: SchedulerOptions = {},
  ) {
    this.pods = new Informer(lw<V1Pod>("pods"), { onError: opts.onError });
    this.nodes = new Informer(lw<V1Node>("nodes"), { onError: opts.onError });
    const name = opts.schedulerName ?? "default-scheduler";
    this.pods.on({
      // A pending pod holds nothing yet: the accounting only changes when pods are bound or go.
      add: (p) => {
        if (p.spec?.nodeName) this.usage = undefined;
        if (needsScheduling(p, name)) this.queue.add(objectKey(p));
      },
      update: (old, p) => {
        const key = objectKey(p);
        const wasAssumed = this.assumed.get(key)?.spec?.nodeName;
        if (p.spec?.nodeName) this.assumed.delete(key);
        const sameNode = old.spec?.nodeName === p.spec?.nodeName;
        const confirmsAssumption = !old.spec?.nodeName && wasAssumed === p.spec?.nodeName;
        // Only a move or an end (Succeeded/Failed) changes what the pod holds: Pending -> Running
        // does not, and recounting every pod for each pod started cost pods^2 at scale.
        if ((!sameNode && !confirmsAssumption) || terminal(old) !== terminal(p)) this.usage = undefined;
        if (needsScheduling(p, name)) this.queue.add(key);
      },
      delete: (p) => {
        if (p.spec?.nodeName || this.assumed.has(objectKey(p))) this.usage = undefined;
        this.assumed.delete(objectKey(p));
        this.lastFailure.delete(objectKey(p));
        // Freed resources may let a waiting pod fit.
        this.retryUnschedulable();
      },
    });
    const nodeChanged = (): void => this.retryUnschedulable();
    this.nodes.on({ add: nodeChanged, update: nodeChanged });
  }

  private retryUnschedulable(): void {
    for (const k of this.unschedulable) this.queue.add(k);
    this.unschedulable.clear();
  }

  async run(signal: AbortSignal): Promise<void> {
    const informers = [this.pods.run(signal), this.nodes.run(signal)];
    // A term may end before the caches fill (the lease lost while etcd is out and every list
    // fails): then the informers stop unsynced, and waiting for their sync alone never ended this
    // term, so the elector waited on it for ever and never campaigned again.
    await Promise.race([
      Promise.all([this.pods.waitForSync(), this.nodes.waitForSync()]),
      new Promise((r) => signal.addEventListener("abort", r, { once: true })),
    ]);
    if (signal.aborted) {
      await Promise.all(informers);
      return;
    }
    await Promise.all([
      runController(signal, {
        queue: this.queue,
        reconcile: (k) => this.reconcile(k),
        workers: this.opts.workers ?? 16,
        onError: this.opts.onError,
      }),
      ...informers,
    ]);
  }

  private currentUsage(): Map<string, NodeUsage> {
    if (!this.usage) {
      this.usage = usageByNode(this.pods.cache.values());
      for (const [k, p] of this.assumed) if (!this.pods.get(k)?.spec?.nodeName) addPodToUsage(this.usage, p);
    }
    return this.usage;
  }

  /** The pod's claims, fetched now (undefined when it uses none). */
  private async claimsOf(pod: V1Pod): Promise<ClaimLookup | undefined> {
    const names = podClaims(pod).map((c) => c.name);
    if (names.length === 0) return undefined;
    const ns = pod.metadata?.namespace ?? "default";
    const found = new Map<string, V1PersistentVolumeClaim>();
    for (const n of names) {
      const c = await fetchClaim(this.writer, ns, n);
      if (c) found.set(n, c);
    }
    return (_ns, n) => found.get(n);
  }

  /** PodScheduled=False through pods/status, unless the pod (as cached) says so already. */
  private async markUnschedulable(pod: V1Pod, message: string): Promise<void> {
    const condition = unschedulableCondition(pod, message, new Date());
    if (!condition) return;
    const others = (pod.status?.conditions ?? []).filter((c) => c.type !== "PodScheduled");
    try {
      await this.writer.updateStatus("pods", pod.metadata?.namespace, {
        ...pod,
        status: { ...pod.status, conditions: [...others, condition] },
      });
    } catch (err) {
      // Changed meanwhile (the watch brings it and re-queues the pod) or gone.
      if (isConflict(err) || isNotFound(err)) return;
      throw err;
    }
  }

  async reconcile(key: string): Promise<void> {
    const pod = this.pods.get(key);
    if (!pod || this.assumed.has(key) || !needsScheduling(pod, this.opts.schedulerName)) return;
    const claims = await this.claimsOf(pod);
    const decision = scheduleDecision(pod, [...this.nodes.cache.values()], this.currentUsage(), {
      ...(claims ? { claims } : {}),
    });
    const { namespace, name } = splitKey(key);
    if ("reasons" in decision) {
      this.unschedulable.add(key);
      this.queue.addAfter(key, this.opts.unschedulableRetryMs ?? 10_000);
      await this.markUnschedulable(pod, decision.message);
      // One event per distinct reason, not one per retry.
      if (this.lastFailure.get(key) === decision.message) return;
      this.lastFailure.set(key, decision.message);
      await recordEvent(
        this.writer,
        "default-scheduler",
        { apiVersion: "v1", kind: "Pod", ...pod },
        "Warning",
        "FailedScheduling",
        decision.message,
      );
      return;
    }
    // Assume before binding, as kube-scheduler does: the next decision (another worker, while this
    // bind is in flight) already counts this pod on its node.
    const assumed = { ...pod, spec: { ...pod.spec!, nodeName: decision.node } };
    const usage = this.currentUsage();
    this.assumed.set(key, assumed);
    addPodToUsage(usage, assumed);
    try {
      await this.writer.bind(namespace ?? "default", name, decision.node);
    } catch (err) {
      this.assumed.delete(key);
      this.usage = undefined;
      // Already bound (409) or gone (404): the watch will tell; nothing to retry.
      if (isConflict(err) || isNotFound(err)) return;
      throw err;
    }
    this.bound++;
    this.lastFailure.delete(key);
    // Events are best effort; the next pod need not wait for them.
    void recordEvent(
      this.writer,
      "default-scheduler",
      { apiVersion: "v1", kind: "Pod", ...pod },
      "Normal",
      "Scheduled",
      `Successfully assigned ${namespace}/${name} to ${decision.node}`,
    );
  }
}

function terminal(p: V1Pod): boolean {
  return p.status?.phase === "Succeeded" || p.status?.phase === "Failed";
}
