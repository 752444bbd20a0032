import type { V1StatusCause } from "@kubernetes/client-node";
import { applyWorkloadDefaults } from "../../../api/defaults-workloads.ts";
import { invalidValue } from "../../../api/validation/field.ts";
import { stableStringify } from "../../../lib/stable-json.ts";
import { Strategy } from "../strategy.ts";
import type { KObject } from "../types.ts";

type Obj = Record<string, unknown>;

const obj = (v: unknown): Obj | undefined =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;

export const JOB_UID_LABEL = "batch.kubernetes.io/controller-uid";
export const JOB_NAME_LABEL = "batch.kubernetes.io/job-name";

/** A Job name is a label value only up to 63 characters (upstream leaves the name labels out then). */
const labelValue = (v: string): boolean =>
  v.length <= 63 && /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(v);

/**
 * Job, CronJob, DaemonSet, StatefulSet and ReplicationController: the status is the
 * controller's (cleared on create), defaults as upstream's SetDefaults_*. A Job without
 * `manualSelector: true` gets upstream's generated selector on its uid and the labels to match.
 */
export class WorkloadStrategy extends Strategy {
  override prepareForCreate(o: KObject): void {
    o.status = {};
    if (this.info.kind !== "Job") return;
    const spec = obj(o.spec);
    if (!spec || spec.manualSelector === true) return;
    const uid = o.metadata.uid ?? "";
    const name = o.metadata.name ?? "";
    const template = (obj(spec.template) ?? (spec.template = {})) as Obj;
    const meta = (obj(template.metadata) ?? (template.metadata = {})) as Obj;
    const labels = { ...(obj(meta.labels) ?? {}) } as Record<string, string>;
    labels[JOB_UID_LABEL] = uid;
    labels["controller-uid"] = uid;
    if (labelValue(name)) {
      labels[JOB_NAME_LABEL] = name;
      labels["job-name"] = name;
    }
    meta.labels = labels;
    if (spec.selector === undefined) spec.selector = { matchLabels: { [JOB_UID_LABEL]: uid } };
  }

  override defaults(o: KObject): void {
    if (!applyWorkloadDefaults(this.info.kind, o)) super.defaults(o);
  }

  override validate(o: KObject): V1StatusCause[] {
    const causes = super.validate(o);
    const spec = obj(o.spec);
    if (this.info.kind === "Job" && spec && spec.manualSelector !== true && spec.selector !== undefined) {
      const want = { matchLabels: { [JOB_UID_LABEL]: o.metadata.uid ?? "" } };
      if (stableStringify(spec.selector) !== stableStringify(want))
        causes.push(invalidValue("spec.selector", spec.selector, "`selector` not auto-generated"));
    }
    return causes;
  }
}
