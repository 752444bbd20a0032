/**
 * The CronJob controller loop (pkg/controller/cronjob, v2): informers on CronJobs and Jobs. Each
 * reconcile brings status.active up to date, trims finished Jobs to the history limits, and when
 * a scheduled time has passed since status.lastScheduleTime (within startingDeadlineSeconds)
 * starts the Job `NAME-<minutes since the epoch>` as concurrencyPolicy allows; then it comes back
 * at the next scheduled time. The clock is injectable so a test can run minutes in seconds.
 */
import type { V1CronJob, V1Job, V1ObjectReference } from "@kubernetes/client-node";
import type { Informer } from "../../api/informer.ts";
import { runOverCache } from "../../api/controller.ts";
import type { ReconcileResult } from "../../api/workqueue.ts";
import { WorkQueue } from "../../api/workqueue.ts";
import { nextTime, parseSchedule, type Schedule } from "../../lib/cron.ts";
import { stableStringify } from "../../lib/stable-json.ts";
import type { ObjectWriter } from "../loop-client.ts";
import { isAlreadyExists, isConflict, isNotFound, recordEvent } from "../loop-client.ts";
import { isFinishedJob } from "./job-decision.ts";
import { controllerRef, ownerRefFor } from "./labels.ts";
import { enqueueController, enqueueObject } from "./enqueue.ts";

export const SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp";
const SOURCE = "cronjob-controller";

/** Time as the controller sees it; `realMs` turns a wait on that clock into a real timer. */
export interface CronClock {
  now(): number;
  realMs(ms: number): number;
}

const REAL: CronClock = { now: Date.now, realMs: (ms) => ms };

const time = (v: unknown): number | undefined =>
  v === undefined || v === null ? undefined : new Date(v as string).getTime();
const iso = (ms: number): Date => new Date(ms).toISOString().replace(/\.\d+Z$/, "Z") as unknown as Date;

/**
 * The latest scheduled time in (earliest, now], how many there were, and the next one after now
 * (upstream's mostRecentScheduleTime, which gives up counting past 100 missed starts).
 */
export function scheduledTimes(
  s: Schedule,
  earliestMs: number,
  nowMs: number,
  tz: string,
): { latest?: number; missed: number; next?: number } {
  let latest: number | undefined;
  let missed = 0;
  let t = nextTime(s, earliestMs, tz);
  while (t !== undefined && t <= nowMs) {
    latest = t;
    missed++;
    if (missed > 100) {
      // Too many to walk one by one: jump to the last one before now.
      const next = nextTime(s, nowMs - 60_000 * 60, tz);
      t = next;
      while (t !== undefined && t <= nowMs) {
        latest = t;
        t = nextTime(s, t, tz);
      }
      break;
    }
    t = nextTime(s, t, tz);
  }
  return { ...(latest !== undefined ? { latest } : {}), missed, ...(t !== undefined ? { next: t } : {}) };
}

export class CronJobController {
  readonly queue = new WorkQueue({ baseDelayMs: 100, maxDelayMs: 30_000 });
  private readonly clock: CronClock;

  constructor(
    private readonly cronJobs: Informer<V1CronJob>,
    private readonly jobs: Informer<V1Job>,
    private readonly w: ObjectWriter,
    private readonly onError?: (err: unknown) => void,
    clock?: CronClock,
  ) {
    this.clock = clock ?? REAL;
    cronJobs.on(enqueueObject(this.queue));
    jobs.on(enqueueController(this.queue, "CronJob"));
  }

  run(signal: AbortSignal, workers = 1): Promise<void> {
    return runOverCache(signal, this, this.cronJobs.cache, { workers, onError: this.onError });
  }

  private ref(cj: V1CronJob): V1CronJob {
    return { apiVersion: "batch/v1", kind: "CronJob", ...cj };
  }

  private event(cj: V1CronJob, type: "Normal" | "Warning", reason: string, message: string): Promise<void> {
    return recordEvent(this.w, SOURCE, this.ref(cj), type, reason, message);
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const cj = this.cronJobs.get(key);
    if (!cj || cj.metadata?.deletionTimestamp) return;
    const ns = cj.metadata?.namespace ?? "default";
    const uid = cj.metadata?.uid;
    const owned = this.jobs.list(ns).filter((j) => controllerRef(j)?.uid === uid);
    const now = this.clock.now();
    const status = structuredClone(cj.status ?? {});
    // status.active: the running Jobs we own (a Job gone or finished leaves it).
    const running = new Map(owned.filter((j) => !isFinishedJob(j)).map((j) => [j.metadata?.uid, j]));
    const before = status.active ?? [];
    const active: V1ObjectReference[] = before.filter((r) => running.has(r.uid));
    for (const j of running.values())
      if (!active.some((r) => r.uid === j.metadata?.uid)) active.push(jobRef(j));
    for (const r of before)
      if (!running.has(r.uid)) {
        const j = owned.find((x) => x.metadata?.uid === r.uid);
        const type = j && isFinishedJob(j);
        if (type)
          await this.event(
            cj,
            "Normal",
            "SawCompletedJob",
            `Saw completed job: ${r.name}, condition: ${type}`,
          );
      }
    for (const j of owned) {
      if (isFinishedJob(j) !== "Complete") continue;
      const done = time(j.status?.completionTime);
      if (done !== undefined && done > (time(status.lastSuccessfulTime) ?? 0))
        status.lastSuccessfulTime = iso(done);
    }
    status.active = active;
    await this.trimHistory(cj, owned);

    let requeue: number | undefined;
    let schedule: Schedule | undefined;
    try {
      schedule = parseSchedule(cj.spec?.schedule ?? "");
    } catch (err) {
      await this.event(
        cj,
        "Warning",
        "UnparseableSchedule",
        `unparseable schedule: ${cj.spec?.schedule}: ${(err as Error).message}`,
      );
    }
    if (schedule && !cj.spec?.suspend) {
      const tz = cj.spec?.timeZone ?? "UTC";
      const deadline = cj.spec?.startingDeadlineSeconds;
      let earliest = time(status.lastScheduleTime) ?? time(cj.metadata?.creationTimestamp) ?? now;
      if (deadline !== undefined && deadline !== null) earliest = Math.max(earliest, now - deadline * 1000);
      const { latest, missed, next } = scheduledTimes(schedule, earliest, now, tz);
      if (missed > 100)
        await this.event(
          cj,
          "Warning",
          "TooManyMissedTimes",
          "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
        );
      if (next !== undefined) requeue = next - now + 100;
      if (latest !== undefined) await this.start(cj, latest, status, now);
    }
    const cur = stableStringify(cj.status ?? {});
    if (cur !== stableStringify(status)) {
      try {
        await this.w.updateStatus("cronjobs", ns, { ...cj, status });
      } catch (err) {
        if (isConflict(err)) return { requeueAfterMs: 100 };
        if (!isNotFound(err)) throw err;
      }
    }
    return requeue === undefined ? undefined : { requeueAfterMs: Math.max(50, this.clock.realMs(requeue)) };
  }

  /** Starts the Job for `scheduled` as concurrencyPolicy allows; updates `status` in place. */
  private async start(
    cj: V1CronJob,
    scheduled: number,
    status: NonNullable<V1CronJob["status"]>,
    now: number,
  ): Promise<void> {
    const ns = cj.metadata?.namespace ?? "default";
    const name = `${cj.metadata?.name}-${Math.floor(scheduled / 60_000)}`;
    const deadline = cj.spec?.startingDeadlineSeconds;
    if (deadline !== undefined && deadline !== null && scheduled + deadline * 1000 < now) {
      await this.event(
        cj,
        "Warning",
        "MissSchedule",
        `Missed scheduled time to start a job: ${new Date(scheduled).toISOString()}`,
      );
      return;
    }
    if ((status.active ?? []).some((r) => r.name === name)) return;
    if (time(status.lastScheduleTime) === scheduled) return;
    const policy = cj.spec?.concurrencyPolicy ?? "Allow";
    if (policy === "Forbid" && (status.active ?? []).length > 0) return; // comes back when they finish
    if (policy === "Replace")
      for (const r of status.active ?? []) {
        try {
          await this.w.delete("jobs", ns, r.name ?? "", {
            propagationPolicy: "Background",
            ...(r.uid ? { uid: r.uid } : {}),
          });
          await this.event(cj, "Normal", "SuccessfulDelete", `Deleted job ${r.name}`);
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
        status.active = (status.active ?? []).filter((x) => x.uid !== r.uid);
      }
    const t = cj.spec?.jobTemplate;
    const job: V1Job = {
      apiVersion: "batch/v1",
      kind: "Job",
      metadata: {
        name,
        namespace: ns,
        labels: { ...(t?.metadata?.labels ?? {}) },
        annotations: {
          ...(t?.metadata?.annotations ?? {}),
          [SCHEDULED_TIMESTAMP]: new Date(scheduled).toISOString().replace(/\.\d+Z$/, "Z"),
        },
        ownerReferences: [ownerRefFor(cj, "batch/v1", "CronJob")],
      },
      spec: structuredClone(t?.spec) ?? { template: {} },
    };
    let created: V1Job | undefined;
    try {
      created = await this.w.create<V1Job>("jobs", ns, job);
      await this.event(cj, "Normal", "SuccessfulCreate", `Created job ${name}`);
    } catch (err) {
      if (!isAlreadyExists(err)) {
        await this.event(cj, "Warning", "FailedCreate", `Error creating job: ${(err as Error).message}`);
        throw err;
      }
      created = await this.w.get<V1Job>("jobs", ns, name);
    }
    if (
      created &&
      !isFinishedJob(created) &&
      !(status.active ?? []).some((r) => r.uid === created.metadata?.uid)
    )
      status.active = [...(status.active ?? []), jobRef(created)];
    status.lastScheduleTime = iso(scheduled);
  }

  /** Deletes the oldest finished Jobs beyond successfulJobsHistoryLimit / failedJobsHistoryLimit. */
  private async trimHistory(cj: V1CronJob, owned: V1Job[]): Promise<void> {
    const ns = cj.metadata?.namespace ?? "default";
    const limits: [string, number][] = [
      ["Complete", cj.spec?.successfulJobsHistoryLimit ?? 3],
      ["Failed", cj.spec?.failedJobsHistoryLimit ?? 1],
    ];
    for (const [type, limit] of limits) {
      const finished = owned
        .filter((j) => isFinishedJob(j) === type && !j.metadata?.deletionTimestamp)
        .sort((a, b) => startOf(a) - startOf(b));
      for (const j of finished.slice(0, Math.max(0, finished.length - limit))) {
        try {
          await this.w.delete("jobs", ns, j.metadata?.name ?? "", {
            propagationPolicy: "Background",
            uid: j.metadata?.uid,
          });
          await this.event(cj, "Normal", "SuccessfulDelete", `Deleted job ${j.metadata?.name}`);
        } catch (err) {
          if (!isNotFound(err) && !isConflict(err)) throw err;
        }
      }
    }
  }
}

function startOf(j: V1Job): number {
  return time(j.status?.startTime) ?? time(j.metadata?.creationTimestamp) ?? 0;
}

function jobRef(j: V1Job): V1ObjectReference {
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    name: j.metadata?.name,
    namespace: j.metadata?.namespace,
    uid: j.metadata?.uid,
    resourceVersion: j.metadata?.resourceVersion,
  };
}
