/**
 * The Job controller loop: informers on Jobs and pods, reconcile = jobDecision (job-decision.ts).
 * Pods carry the Job as controller owner, so deleting a Job cascades through the garbage collector;
 * a finished Job whose ttlSecondsAfterFinished ran out is deleted in the foreground (the TTL
 * controller's part).
 */
import type { V1EnvVar, V1Job, V1Pod } from "@kubernetes/client-node";
import type { Informer } from "../../api/informer.ts";
import { objectKey } from "../../api/informer.ts";
import { runOverCache } from "../../api/controller.ts";
import type { ReconcileResult } from "../../api/workqueue.ts";
import { WorkQueue } from "../../api/workqueue.ts";
import type { ObjectWriter } from "../loop-client.ts";
import { isConflict, isNotFound, recordEvent } from "../loop-client.ts";
import { stableStringify } from "../../lib/stable-json.ts";
import { Expectations } from "./expectations.ts";
import { createOwnedPods, deleteOwnedPods, type PodControl } from "./pod-control.ts";
import { COMPLETION_INDEX, jobDecision } from "./job-decision.ts";
import { controllerRef, ownerRefFor } from "./labels.ts";
import { generateName } from "./names.ts";

export interface JobControllerOptions {
  now?: () => number;
  /** First back-off after a pod failure (default 10 s, as upstream). */
  backoffBaseMs?: number;
}

const SOURCE = "job-controller";

export class JobController {
  readonly queue = new WorkQueue({ baseDelayMs: 50, maxDelayMs: 30_000 });
  readonly expectations = new Expectations();
  private readonly now: () => number;

  constructor(
    private readonly jobs: Informer<V1Job>,
    private readonly pods: Informer<V1Pod>,
    private readonly w: ObjectWriter,
    private readonly onError?: (err: unknown) => void,
    private readonly opts: JobControllerOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    const enqueue = (j: V1Job): void => this.queue.add(objectKey(j));
    jobs.on({
      add: enqueue,
      update: (_o, n) => enqueue(n),
      delete: (j) => {
        this.expectations.forget(objectKey(j));
        enqueue(j);
      },
    });
    pods.on({
      add: (p) => {
        const k = this.ownerKey(p);
        if (k) {
          this.expectations.creationObserved(k);
          this.queue.add(k);
        }
      },
      update: (old, p) => {
        const k = this.ownerKey(p);
        if (!k) return;
        if (p.metadata?.deletionTimestamp && !old.metadata?.deletionTimestamp)
          this.expectations.deletionObserved(k, objectKey(p));
        this.queue.add(k);
      },
      delete: (p) => {
        const k = this.ownerKey(p);
        if (!k) return;
        this.expectations.deletionObserved(k, objectKey(p));
        this.queue.add(k);
      },
    });
  }

  private ownerKey(p: V1Pod): string | undefined {
    const ref = controllerRef(p);
    return ref?.kind === "Job" ? `${p.metadata?.namespace}/${ref.name}` : undefined;
  }

  run(signal: AbortSignal, workers = 2): Promise<void> {
    return runOverCache(signal, this, this.jobs.cache, { workers, onError: this.onError });
  }

  private ownPods(job: V1Job): V1Pod[] {
    const uid = job.metadata?.uid;
    return this.pods.list(job.metadata?.namespace).filter((p) => controllerRef(p)?.uid === uid);
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const job = this.jobs.get(key);
    if (!job || job.metadata?.deletionTimestamp) return;
    const ns = job.metadata?.namespace ?? "default";
    const d = jobDecision(job, this.ownPods(job), {
      nowMs: this.now(),
      ...(this.opts.backoffBaseMs !== undefined ? { backoffBaseMs: this.opts.backoffBaseMs } : {}),
    });
    if (d.expired) {
      try {
        await this.w.delete("jobs", ns, job.metadata?.name ?? "", {
          propagationPolicy: "Foreground",
          uid: job.metadata?.uid,
        });
      } catch (err) {
        if (!isNotFound(err) && !isConflict(err)) throw err;
      }
      return;
    }
    if (this.expectations.satisfied(key)) {
      if (d.delete.length) await this.deletePods(job, key, d.delete);
      if (d.create.count > 0) await this.createPods(job, key, d.create);
    }
    if (stableStringify(job.status ?? {}) !== stableStringify(d.status)) {
      try {
        await this.w.updateStatus("jobs", ns, { ...job, status: d.status });
      } catch (err) {
        if (isConflict(err)) return { requeueAfterMs: 100 };
        if (!isNotFound(err)) throw err;
        return;
      }
      if (d.finished) {
        const ref = { apiVersion: "batch/v1", kind: "Job", ...job };
        if (d.finished.type === "Complete")
          await recordEvent(this.w, SOURCE, ref, "Normal", "Completed", "Job completed");
        else await recordEvent(this.w, SOURCE, ref, "Warning", d.finished.reason, d.finished.message);
      }
    }
    if (d.recheckMs !== undefined) return { requeueAfterMs: Math.max(50, Math.ceil(d.recheckMs) + 50) };
    return;
  }

  private podFor(job: V1Job, index: number | undefined): V1Pod {
    const ns = job.metadata?.namespace ?? "default";
    const t = job.spec?.template;
    const spec = structuredClone(t?.spec) ?? { containers: [] };
    const annotations = { ...(t?.metadata?.annotations ?? {}) };
    const labels = { ...(t?.metadata?.labels ?? {}) };
    let prefix = `${job.metadata?.name}-`;
    if (index !== undefined) {
      annotations[COMPLETION_INDEX] = String(index);
      labels[COMPLETION_INDEX] = String(index);
      prefix = `${job.metadata?.name}-${index}-`;
      spec.hostname ??= `${job.metadata?.name}-${index}`.slice(0, 63);
      const env: V1EnvVar = {
        name: "JOB_COMPLETION_INDEX",
        valueFrom: { fieldRef: { fieldPath: `metadata.annotations['${COMPLETION_INDEX}']` } },
      };
      for (const c of [...spec.containers, ...(spec.initContainers ?? [])])
        if (!(c.env ?? []).some((e) => e.name === "JOB_COMPLETION_INDEX")) c.env = [...(c.env ?? []), env];
    }
    return {
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        name: generateName(prefix),
        namespace: ns,
        labels,
        annotations,
        ownerReferences: [ownerRefFor(job, "batch/v1", "Job")],
      },
      spec,
    };
  }

  private async createPods(job: V1Job, key: string, c: { count: number; indexes: number[] }): Promise<void> {
    const ns = job.metadata?.namespace ?? "default";
    const pods =
      c.indexes.length > 0
        ? c.indexes.map((i) => this.podFor(job, i))
        : Array.from({ length: c.count }, () => this.podFor(job, undefined));
    this.expectations.expect(key, pods.length, []);
    await createOwnedPods(this.control(), { apiVersion: "batch/v1", kind: "Job", ...job }, key, ns, pods);
  }

  private deletePods(job: V1Job, key: string, pods: V1Pod[]): Promise<void> {
    return deleteOwnedPods(this.control(), { apiVersion: "batch/v1", kind: "Job", ...job }, key, pods);
  }

  private control(): PodControl {
    return { w: this.w, source: SOURCE, expectations: this.expectations, pods: this.pods };
  }
}
