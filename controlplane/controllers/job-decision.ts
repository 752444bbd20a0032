/**
 * The Job controller's decision, pure (pkg/controller/job): which pods to create (with their
 * completion index in Indexed mode) and delete, the status to write, and when to look again.
 * Failures are counted from failed pods plus container restarts (restartPolicy OnFailure);
 * replacements after a failure wait upstream's exponential back-off (10 s doubling, at most 6 min).
 */
import type { V1Job, V1JobCondition, V1JobStatus, V1Pod } from "@kubernetes/client-node";
import { isPodReady } from "./pods.ts";

export const COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index";

export interface JobDecisionOptions {
  nowMs: number;
  /** First back-off after a failure (upstream DefaultJobPodFailureBackOff, 10 s). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

export interface JobDecision {
  /** Completion indexes to create pods for (Indexed mode), or `count` pods (NonIndexed). */
  create: { count: number; indexes: number[] };
  delete: V1Pod[];
  status: V1JobStatus;
  /** Condition just reached (for the event). */
  finished?: { type: "Complete" | "Failed"; reason: string; message: string };
  /** Reconcile again after this long (deadline, back-off, TTL). */
  recheckMs?: number;
  /** The finished Job's TTL ran out: delete it. */
  expired?: boolean;
}

const time = (v: unknown): number | undefined =>
  v === undefined || v === null ? undefined : new Date(v as string).getTime();
const iso = (ms: number): Date => new Date(ms).toISOString().replace(/\.\d+Z$/, "Z") as unknown as Date;

export function isFinishedJob(job: V1Job): "Complete" | "Failed" | undefined {
  for (const c of job.status?.conditions ?? [])
    if ((c.type === "Complete" || c.type === "Failed") && c.status === "True") return c.type;
  return undefined;
}

function podIndex(p: V1Pod): number | undefined {
  const v = p.metadata?.annotations?.[COMPLETION_INDEX];
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}

/** `1,3-5,7` as upstream writes status.completedIndexes. */
export function indexesText(set: Set<number>): string {
  const xs = [...set].sort((a, b) => a - b);
  const out: string[] = [];
  for (let i = 0; i < xs.length;) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j]! + 1) j++;
    out.push(i === j ? `${xs[i]}` : `${xs[i]}-${xs[j]}`);
    i = j + 1;
  }
  return out.join(",");
}

export function parseIndexes(text: string | undefined): Set<number> {
  const out = new Set<number>();
  for (const part of (text ?? "").split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) continue;
    for (let i = Number(m[1]); i <= Number(m[2] ?? m[1]); i++) out.add(i);
  }
  return out;
}

function setCondition(
  conds: V1JobCondition[],
  type: string,
  status: "True" | "False",
  reason: string,
  message: string,
  nowMs: number,
): V1JobCondition[] {
  const prev = conds.find((c) => c.type === type);
  if (prev && prev.status === status && prev.reason === reason) return conds;
  const c: V1JobCondition = {
    type,
    status,
    reason,
    message,
    lastProbeTime: iso(nowMs),
    lastTransitionTime: prev && prev.status === status ? prev.lastTransitionTime : iso(nowMs),
  };
  return [...conds.filter((x) => x.type !== type), c];
}

const restarts = (p: V1Pod): number =>
  (p.status?.containerStatuses ?? []).reduce((n, c) => n + (c.restartCount ?? 0), 0);

function lastFinish(p: V1Pod): number {
  let t = 0;
  for (const c of p.status?.containerStatuses ?? [])
    t = Math.max(t, time(c.state?.terminated?.finishedAt) ?? time(c.lastState?.terminated?.finishedAt) ?? 0);
  return t || (time(p.metadata?.creationTimestamp) ?? 0);
}

/** `pods` are the Job's own (controller reference). */
export function jobDecision(job: V1Job, pods: V1Pod[], o: JobDecisionOptions): JobDecision {
  const now = o.nowMs;
  const spec = job.spec ?? { template: {} };
  const prev = job.status ?? {};
  const indexed = spec.completionMode === "Indexed";
  const active = pods.filter(
    (p) => !p.metadata?.deletionTimestamp && p.status?.phase !== "Succeeded" && p.status?.phase !== "Failed",
  );
  const succeededPods = pods.filter((p) => p.status?.phase === "Succeeded");
  const failedPods = pods.filter((p) => p.status?.phase === "Failed");
  const completed = parseIndexes(prev.completedIndexes);
  if (indexed)
    for (const p of succeededPods) {
      const i = podIndex(p);
      if (i !== undefined && i < (spec.completions ?? 0)) completed.add(i);
    }
  const succeeded = indexed ? completed.size : Math.max(prev.succeeded ?? 0, succeededPods.length);
  const failed = Math.max(prev.failed ?? 0, failedPods.length);
  const restartCount =
    spec.template?.spec?.restartPolicy === "OnFailure" ? active.reduce((n, p) => n + restarts(p), 0) : 0;
  let conditions = [...(prev.conditions ?? [])];
  const status: V1JobStatus = {
    ...prev,
    active: active.length,
    ready: active.filter(isPodReady).length,
    succeeded,
    failed,
    terminating: pods.filter((p) => p.metadata?.deletionTimestamp).length,
    uncountedTerminatedPods: {},
  };
  if (indexed) status.completedIndexes = indexesText(completed);
  const none = { count: 0, indexes: [] as number[] };
  const done = isFinishedJob(job);
  if (done) {
    // Finished: the rest of its pods go, and its TTL runs from the finish.
    const ttl = spec.ttlSecondsAfterFinished;
    const finishedAt =
      time(prev.completionTime) ?? time(conditions.find((c) => c.type === done)?.lastTransitionTime) ?? now;
    const d: JobDecision = { create: none, delete: active, status: { ...status, conditions } };
    if (ttl !== undefined) {
      const left = finishedAt + ttl * 1000 - now;
      if (left <= 0) d.expired = true;
      else d.recheckMs = left;
    }
    return d;
  }
  const fail = (reason: string, message: string): JobDecision => {
    conditions = setCondition(conditions, "FailureTarget", "True", reason, message, now);
    conditions = setCondition(conditions, "Failed", "True", reason, message, now);
    return {
      create: none,
      delete: active,
      status: { ...status, conditions, ...(status.startTime ? {} : { startTime: iso(now) }) },
      finished: { type: "Failed", reason, message },
    };
  };
  if (spec.suspend) {
    conditions = setCondition(conditions, "Suspended", "True", "JobSuspended", "Job suspended", now);
    const st: V1JobStatus = { ...status, conditions };
    delete st.startTime;
    return { create: none, delete: active, status: st };
  }
  if (conditions.some((c) => c.type === "Suspended" && c.status === "True"))
    conditions = setCondition(conditions, "Suspended", "False", "JobResumed", "Job resumed", now);
  const startMs = time(prev.startTime) ?? now;
  status.startTime = iso(startMs);
  if (failed + restartCount > (spec.backoffLimit ?? 6))
    return fail("BackoffLimitExceeded", "Job has reached the specified backoff limit");
  if (spec.activeDeadlineSeconds !== undefined) {
    const left = startMs + spec.activeDeadlineSeconds * 1000 - now;
    if (left <= 0) return fail("DeadlineExceeded", "Job was active longer than specified deadline");
  }
  const completions = spec.completions;
  const parallelism = spec.parallelism ?? 1;
  const complete =
    completions !== undefined && completions !== null
      ? succeeded >= completions
      : succeeded > 0 && active.length === 0;
  if (complete) {
    conditions = setCondition(
      conditions,
      "SuccessCriteriaMet",
      "True",
      "CompletionsReached",
      "Reached expected number of succeeded pods",
      now,
    );
    conditions = setCondition(
      conditions,
      "Complete",
      "True",
      "CompletionsReached",
      "Reached expected number of succeeded pods",
      now,
    );
    return {
      create: none,
      delete: active,
      status: { ...status, conditions, completionTime: iso(now) },
      finished: {
        type: "Complete",
        reason: "CompletionsReached",
        message: "Reached expected number of succeeded pods",
      },
      ...(spec.ttlSecondsAfterFinished !== undefined
        ? { recheckMs: spec.ttlSecondsAfterFinished * 1000 }
        : {}),
    };
  }
  // Exponential back-off after failures: replacements wait base * 2^(failures-1).
  let recheckMs: number | undefined;
  if (spec.activeDeadlineSeconds !== undefined) recheckMs = startMs + spec.activeDeadlineSeconds * 1000 - now;
  const failures = failed + restartCount;
  let backedOff = false;
  if (failures > 0) {
    const last = Math.max(0, ...failedPods.map(lastFinish));
    const wait = Math.min((o.backoffBaseMs ?? 10_000) * 2 ** (failures - 1), o.backoffMaxMs ?? 360_000);
    const left = last + wait - now;
    if (failedPods.length > 0 && left > 0) {
      backedOff = true;
      recheckMs = recheckMs === undefined ? left : Math.min(recheckMs, left);
    }
  }
  const d: JobDecision = {
    create: none,
    delete: [],
    status: { ...status, conditions },
    ...(recheckMs !== undefined ? { recheckMs } : {}),
  };
  if (indexed) {
    const n = completions ?? 0;
    const byIndex = new Map<number, V1Pod[]>();
    const stray: V1Pod[] = [];
    for (const p of active) {
      const i = podIndex(p);
      if (i === undefined || i >= n || completed.has(i)) stray.push(p);
      else byIndex.set(i, [...(byIndex.get(i) ?? []), p]);
    }
    // One pod per index: duplicates and pods of finished indexes go.
    for (const ps of byIndex.values()) stray.push(...ps.slice(1));
    d.delete = stray;
    const want = Math.min(parallelism, n - completed.size);
    const missing: number[] = [];
    for (let i = 0; i < n && byIndex.size + missing.length < want; i++)
      if (!completed.has(i) && !byIndex.has(i)) missing.push(i);
    if (!backedOff) d.create = { count: missing.length, indexes: missing };
    return d;
  }
  const want =
    completions !== undefined && completions !== null
      ? Math.min(parallelism, completions - succeeded)
      : succeeded > 0
        ? 0
        : parallelism;
  if (active.length > want) {
    const newestFirst = [...active].sort(
      (a, b) => (time(b.metadata?.creationTimestamp) ?? 0) - (time(a.metadata?.creationTimestamp) ?? 0),
    );
    d.delete = newestFirst.slice(0, active.length - want);
  } else if (active.length < want && !backedOff) d.create = { count: want - active.length, indexes: [] };
  return d;
}
