import type { V1StatusCause } from "@kubernetes/client-node";
import { CronError, parseSchedule, validTimeZone } from "../../lib/cron.ts";
import { stableStringify } from "../../lib/stable-json.ts";
import { matchesLabels, selectorObjectToRequirements, type SelectorObject } from "../selectors.ts";
import { validateSelector } from "./apps.ts";
import { obj, validatePodSpec } from "./core.ts";
import { FieldPath, forbidden, immutable, invalidValue, notSupported, required } from "./field.ts";
import { isQualifiedName, isValidLabelValue } from "./names.ts";

/**
 * Rules of the workload kinds of issue 19 (pkg/apis/batch/validation, pkg/apis/apps/validation,
 * pkg/apis/core/validation for ReplicationController), run once the field types are right.
 */

type Obj = Record<string, unknown>;
const SPEC = FieldPath.root("spec");

export const WORKLOAD_KINDS = new Set([
  "Job",
  "CronJob",
  "DaemonSet",
  "StatefulSet",
  "ReplicationController",
]);

function nonNegative(s: Obj, field: string, path: FieldPath, causes: V1StatusCause[]): void {
  const v = s[field];
  if (typeof v === "number" && v < 0)
    causes.push(invalidValue(path.child(field), v, "must be greater than or equal to 0"));
}

/** `intstr` percent or count: non-negative, a percent at most 100%. */
function intOrPercent(v: unknown, path: FieldPath, causes: V1StatusCause[]): number | "percent" | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === "number") {
    if (v < 0) causes.push(invalidValue(path, v, "must be greater than or equal to 0"));
    return v;
  }
  const m = /^(\d+)%$/.exec(String(v));
  if (!m) {
    causes.push(
      invalidValue(path, v, "a valid percent string must be a numeric string followed by an ending '%'"),
    );
    return undefined;
  }
  if (Number(m[1]) > 100) causes.push(invalidValue(path, v, "must not be greater than 100%"));
  return Number(m[1]) === 0 ? 0 : "percent";
}

function templateLabelsMatch(
  sel: Obj,
  template: Obj | undefined,
  causes: V1StatusCause[],
  path: FieldPath,
): void {
  const labels = (obj(obj(template?.metadata)?.labels) ?? {}) as Record<string, string>;
  if (!matchesLabels(selectorObjectToRequirements(sel as SelectorObject), labels))
    causes.push(invalidValue(path, labels, "`selector` does not match template `labels`"));
}

function restartPolicyIn(
  template: Obj | undefined,
  path: FieldPath,
  allowed: string[],
  causes: V1StatusCause[],
): void {
  const rp = obj(template?.spec)?.restartPolicy;
  if (rp !== undefined && !allowed.includes(String(rp)))
    causes.push(notSupported(path.child("spec").child("restartPolicy"), rp, allowed));
}

/** A JobSpec; `inCronJob` for a CronJob's jobTemplate.spec (no selector there yet). */
function validateJobSpec(s: Obj, path: FieldPath, causes: V1StatusCause[], inCronJob: boolean): void {
  for (const f of [
    "parallelism",
    "completions",
    "activeDeadlineSeconds",
    "backoffLimit",
    "ttlSecondsAfterFinished",
  ])
    nonNegative(s, f, path, causes);
  const mode = s.completionMode;
  if (mode !== undefined && mode !== "NonIndexed" && mode !== "Indexed")
    causes.push(notSupported(path.child("completionMode"), mode, ["NonIndexed", "Indexed"]));
  if (mode === "Indexed" && s.completions === undefined)
    causes.push(required(path.child("completions"), "when completion mode is Indexed"));
  const template = obj(s.template);
  const tpath = path.child("template");
  const sel = obj(s.selector);
  if (!inCronJob) {
    if (!sel) causes.push(required(path.child("selector")));
    else if (validateSelector(sel, path.child("selector"), "Job", causes))
      templateLabelsMatch(sel, template, causes, tpath.child("metadata").child("labels"));
  }
  validatePodSpec(obj(template?.spec), tpath.child("spec"), causes);
  restartPolicyIn(template, tpath, ["OnFailure", "Never"], causes);
}

function validateCronJob(s: Obj, causes: V1StatusCause[]): void {
  const schedule = s.schedule;
  if (typeof schedule !== "string" || schedule === "") causes.push(required(SPEC.child("schedule")));
  else if (/^(CRON_)?TZ=/.test(schedule.trim()))
    causes.push(
      invalidValue(
        SPEC.child("schedule"),
        schedule,
        "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
      ),
    );
  else
    try {
      parseSchedule(schedule);
    } catch (err) {
      if (!(err instanceof CronError)) throw err;
      causes.push(invalidValue(SPEC.child("schedule"), schedule, err.message));
    }
  const tz = s.timeZone;
  if (typeof tz === "string" && (tz === "" || tz.toLowerCase() === "local" || !validTimeZone(tz)))
    causes.push(invalidValue(SPEC.child("timeZone"), tz, "unknown time zone " + tz));
  const policy = s.concurrencyPolicy;
  if (policy !== undefined && !["Allow", "Forbid", "Replace"].includes(String(policy)))
    causes.push(notSupported(SPEC.child("concurrencyPolicy"), policy, ["Allow", "Forbid", "Replace"]));
  for (const f of ["startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"])
    nonNegative(s, f, SPEC, causes);
  const jt = obj(s.jobTemplate);
  const jspec = obj(jt?.spec);
  if (!jspec) causes.push(required(SPEC.child("jobTemplate").child("spec")));
  else validateJobSpec(jspec, SPEC.child("jobTemplate").child("spec"), causes, true);
}

function validateAppsSelector(kind: string, s: Obj, causes: V1StatusCause[]): void {
  const sel = obj(s.selector);
  if (!sel) causes.push(required(SPEC.child("selector")));
  else if (validateSelector(sel, SPEC.child("selector"), kind, causes))
    templateLabelsMatch(
      sel,
      obj(s.template),
      causes,
      SPEC.child("template").child("metadata").child("labels"),
    );
  validatePodSpec(obj(obj(s.template)?.spec), SPEC.child("template").child("spec"), causes);
  restartPolicyIn(obj(s.template), SPEC.child("template"), ["Always"], causes);
}

function validateDaemonSet(s: Obj, causes: V1StatusCause[]): void {
  validateAppsSelector("DaemonSet", s, causes);
  nonNegative(s, "minReadySeconds", SPEC, causes);
  nonNegative(s, "revisionHistoryLimit", SPEC, causes);
  const strategy = obj(s.updateStrategy);
  const path = SPEC.child("updateStrategy");
  const type = strategy?.type;
  if (type !== undefined && type !== "RollingUpdate" && type !== "OnDelete")
    causes.push(notSupported(path.child("type"), type, ["OnDelete", "RollingUpdate"]));
  if (type !== "RollingUpdate") return;
  const ru = obj(strategy?.rollingUpdate) ?? {};
  const rpath = path.child("rollingUpdate");
  const unavailable = intOrPercent(ru.maxUnavailable, rpath.child("maxUnavailable"), causes);
  const surge = intOrPercent(ru.maxSurge, rpath.child("maxSurge"), causes);
  if (unavailable === 0 && (surge === 0 || surge === undefined))
    causes.push(
      invalidValue(rpath.child("maxUnavailable"), ru.maxUnavailable, "may not be 0 when `maxSurge` is 0"),
    );
  if (unavailable !== 0 && unavailable !== undefined && surge !== 0 && surge !== undefined)
    causes.push(
      invalidValue(rpath.child("maxSurge"), ru.maxSurge, "may not be set when maxUnavailable is non-zero"),
    );
}

function validateStatefulSet(s: Obj, causes: V1StatusCause[]): void {
  validateAppsSelector("StatefulSet", s, causes);
  for (const f of ["replicas", "minReadySeconds", "revisionHistoryLimit"]) nonNegative(s, f, SPEC, causes);
  const pmp = s.podManagementPolicy;
  if (pmp !== undefined && pmp !== "OrderedReady" && pmp !== "Parallel")
    causes.push(notSupported(SPEC.child("podManagementPolicy"), pmp, ["OrderedReady", "Parallel"]));
  const strategy = obj(s.updateStrategy);
  const path = SPEC.child("updateStrategy");
  const type = strategy?.type;
  if (type !== undefined && type !== "RollingUpdate" && type !== "OnDelete")
    causes.push(notSupported(path.child("type"), type, ["OnDelete", "RollingUpdate"]));
  if (type === "OnDelete" && strategy?.rollingUpdate !== undefined)
    causes.push(forbidden(path.child("rollingUpdate"), "only allowed for updateStrategy 'RollingUpdate'"));
  const ru = obj(strategy?.rollingUpdate);
  if (ru) {
    nonNegative(ru, "partition", path.child("rollingUpdate"), causes);
    intOrPercent(ru.maxUnavailable, path.child("rollingUpdate").child("maxUnavailable"), causes);
  }
  const names = new Set<string>();
  (Array.isArray(s.volumeClaimTemplates) ? s.volumeClaimTemplates : []).forEach((raw, i) => {
    const name = obj(obj(raw)?.metadata)?.name;
    const p = SPEC.child("volumeClaimTemplates").index(i).child("metadata").child("name");
    if (typeof name !== "string" || name === "") causes.push(required(p, "name or generateName is required"));
    else if (names.has(name)) causes.push(invalidValue(p, name, "duplicate name"));
    else names.add(name);
  });
}

function validateReplicationController(s: Obj, causes: V1StatusCause[]): void {
  nonNegative(s, "replicas", SPEC, causes);
  nonNegative(s, "minReadySeconds", SPEC, causes);
  const sel = (obj(s.selector) ?? {}) as Record<string, unknown>;
  if (Object.keys(sel).length === 0) causes.push(required(SPEC.child("selector")));
  for (const [k, v] of Object.entries(sel)) {
    for (const m of isQualifiedName(k)) causes.push(invalidValue(SPEC.child("selector"), k, m));
    if (typeof v === "string")
      for (const m of isValidLabelValue(v)) causes.push(invalidValue(SPEC.child("selector"), v, m));
  }
  const template = obj(s.template);
  if (!template) {
    causes.push(required(SPEC.child("template")));
    return;
  }
  const labels = (obj(obj(template.metadata)?.labels) ?? {}) as Record<string, unknown>;
  if (Object.keys(sel).length && !Object.entries(sel).every(([k, v]) => labels[k] === v))
    causes.push(
      invalidValue(
        SPEC.child("template").child("metadata").child("labels"),
        labels,
        "`selector` does not match template `labels`",
      ),
    );
  validatePodSpec(obj(template.spec), SPEC.child("template").child("spec"), causes);
  restartPolicyIn(template, SPEC.child("template"), ["Always"], causes);
}

/** The kind's own rules for a workload kind. */
export function validateWorkload(kind: string, o: Obj, causes: V1StatusCause[]): void {
  const s = obj(o.spec);
  if (!s) {
    causes.push(required(SPEC));
    return;
  }
  if (kind === "Job") validateJobSpec(s, SPEC, causes, false);
  else if (kind === "CronJob") validateCronJob(s, causes);
  else if (kind === "DaemonSet") validateDaemonSet(s, causes);
  else if (kind === "StatefulSet") validateStatefulSet(s, causes);
  else if (kind === "ReplicationController") validateReplicationController(s, causes);
}

/** StatefulSet fields an update may change (ValidateStatefulSetUpdate). */
const STS_MUTABLE = [
  "replicas",
  "ordinals",
  "template",
  "updateStrategy",
  "persistentVolumeClaimRetentionPolicy",
  "minReadySeconds",
];

/** The update-only rules of a workload kind. */
export function validateWorkloadKindUpdate(kind: string, next: Obj, old: Obj, causes: V1StatusCause[]): void {
  const ns = obj(next.spec) ?? {};
  const os = obj(old.spec) ?? {};
  if (kind === "Job") {
    causes.push(...immutable(SPEC.child("selector"), ns.selector, os.selector));
    causes.push(...immutable(SPEC.child("completions"), ns.completions, os.completions));
    causes.push(...immutable(SPEC.child("completionMode"), ns.completionMode, os.completionMode));
    // The template may change only while the Job is suspended (mutable scheduling directives).
    if (!(os.suspend === true) && stableStringify(ns.template) !== stableStringify(os.template))
      causes.push(...immutable(SPEC.child("template"), ns.template, os.template));
  } else if (kind === "DaemonSet") {
    causes.push(...immutable(SPEC.child("selector"), ns.selector, os.selector));
  } else if (kind === "StatefulSet") {
    causes.push(...immutable(SPEC.child("selector"), ns.selector, os.selector));
    const rest = (s: Obj): string =>
      stableStringify(Object.fromEntries(Object.entries(s).filter(([k]) => !STS_MUTABLE.includes(k))));
    if (rest(ns) !== rest(os))
      causes.push(
        forbidden(
          SPEC,
          "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ),
      );
  }
}
