/**
 * Defaults of the workload kinds of issue 19 as upstream sets them (pkg/apis/batch/v1,
 * pkg/apis/apps/v1 and pkg/apis/core/v1 SetDefaults_*): Job, CronJob, DaemonSet, StatefulSet,
 * ReplicationController.
 */
import { defaultPodSpec, ensure, obj, type Obj } from "./defaults.ts";

function defaultTemplate(spec: Obj): void {
  defaultPodSpec(ensure(ensure(spec, "template"), "spec"));
}

/** SetDefaults_Job on a JobSpec (also a CronJob's jobTemplate.spec). */
export function defaultJobSpec(spec: Obj): void {
  if (spec.completions === undefined && spec.parallelism === undefined) {
    spec.completions = 1;
    spec.parallelism = 1;
  }
  spec.parallelism ??= 1;
  spec.backoffLimit ??= spec.backoffLimitPerIndex === undefined ? 6 : 2147483647;
  spec.completionMode ??= "NonIndexed";
  spec.suspend ??= false;
  if (spec.podFailurePolicy === undefined) spec.podReplacementPolicy ??= "TerminatingOrFailed";
  defaultTemplate(spec);
}

/** Fills the defaults of a workload kind in place; false when `kind` is none of them. */
export function applyWorkloadDefaults(kind: string, o: Obj): boolean {
  const spec = obj(o.spec);
  switch (kind) {
    case "Job": {
      if (!spec) return true;
      defaultJobSpec(spec);
      // A Job without labels takes its template's (SetDefaults_Job).
      const labels = obj(obj(obj(spec.template)?.metadata)?.labels);
      const meta = ensure(o, "metadata");
      if (labels && Object.keys(obj(meta.labels) ?? {}).length === 0) meta.labels = { ...labels };
      return true;
    }
    case "CronJob":
      if (!spec) return true;
      spec.concurrencyPolicy ??= "Allow";
      spec.suspend ??= false;
      spec.successfulJobsHistoryLimit ??= 3;
      spec.failedJobsHistoryLimit ??= 1;
      defaultJobSpec(ensure(ensure(spec, "jobTemplate"), "spec"));
      return true;
    case "DaemonSet": {
      if (!spec) return true;
      const strategy = ensure(spec, "updateStrategy");
      strategy.type ??= "RollingUpdate";
      if (strategy.type === "RollingUpdate") {
        const ru = ensure(strategy, "rollingUpdate");
        ru.maxUnavailable ??= 1;
        ru.maxSurge ??= 0;
      }
      spec.revisionHistoryLimit ??= 10;
      defaultTemplate(spec);
      return true;
    }
    case "StatefulSet": {
      if (!spec) return true;
      spec.replicas ??= 1;
      spec.podManagementPolicy ??= "OrderedReady";
      const strategy = ensure(spec, "updateStrategy");
      strategy.type ??= "RollingUpdate";
      if (strategy.type === "RollingUpdate") ensure(strategy, "rollingUpdate").partition ??= 0;
      spec.revisionHistoryLimit ??= 10;
      const retention = ensure(spec, "persistentVolumeClaimRetentionPolicy");
      retention.whenDeleted ??= "Retain";
      retention.whenScaled ??= "Retain";
      for (const raw of Array.isArray(spec.volumeClaimTemplates) ? spec.volumeClaimTemplates : []) {
        const claim = obj(raw);
        if (!claim) continue;
        const cs = ensure(claim, "spec");
        cs.volumeMode ??= "Filesystem";
        ensure(claim, "status").phase ??= "Pending";
      }
      defaultTemplate(spec);
      return true;
    }
    case "ReplicationController": {
      if (!spec) return true;
      spec.replicas ??= 1;
      const labels = obj(obj(obj(spec.template)?.metadata)?.labels);
      // SetDefaults_ReplicationController: selector and labels default to the template's labels.
      if (labels && Object.keys(obj(spec.selector) ?? {}).length === 0) spec.selector = { ...labels };
      const meta = ensure(o, "metadata");
      if (labels && Object.keys(obj(meta.labels) ?? {}).length === 0) meta.labels = { ...labels };
      defaultTemplate(spec);
      return true;
    }
    default:
      return false;
  }
}
