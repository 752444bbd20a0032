/**
 * The scheduler loop: informers on pods and nodes, a queue of pending pod keys, and a reconcile
 * that decides (pure `scheduleDecision`) and binds through pods/binding. Bindings it made are
 * "assumed" into its own accounting until the watch shows them, so a burst of pods does not
 * overcommit a node between bind and watch event.
 */
import type { V1Node, V1Pod } from "@kubernetes/client-node";
import { Informer, objectKey, splitKey } from "../../api/informer.ts";
import { runWorkers, WorkQueue } from "../../api/workqueue.ts";
import type { ListWatchFactory, ObjectWriter } from "../loop-client.ts";
import { isConflict, isNotFound, recordEvent } from "../loop-client.ts";
import type { NodeUsage } from "./decision.ts";
import { addPodToUsage, needsScheduling, scheduleDecision, usageByNode } from "./decision.ts";

export interface SchedulerOptions {
  schedulerName?: string;
  /** Retry delay for a pod that fits nowhere, besides the retry on any node change. */
  unschedulableRetryMs?: number;
  /** Bindings in flight at once (default 4); decisions stay sequential. */
  workers?: number;
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
        if ((!sameNode && !confirmsAssumption) || old.status?.phase !== p.status?.phase)
          this.usage = undefined;
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
    await Promise.all([this.pods.waitForSync(), this.nodes.waitForSync()]);
    signal.addEventListener("abort", () => this.queue.shutDown(), { once: true });
    await Promise.all([
      runWorkers(this.queue, (k) => this.reconcile(k), {
        workers: this.opts.workers ?? 4,
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

  async reconcile(key: string): Promise<void> {
    const pod = this.pods.get(key);
    if (!pod || this.assumed.has(key) || !needsScheduling(pod, this.opts.schedulerName)) return;
    const decision = scheduleDecision(pod, [...this.nodes.cache.values()], this.currentUsage());
    const { namespace, name } = splitKey(key);
    if ("reasons" in decision) {
      this.unschedulable.add(key);
      this.queue.addAfter(key, this.opts.unschedulableRetryMs ?? 10_000);
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
