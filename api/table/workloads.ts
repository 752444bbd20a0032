/** Printers of the workload kinds: apps/v1, batch/v1 and core/v1's ReplicationController. */
import type { Cell, Obj, Printer } from "./cells.ts";
import {
  AGE,
  NAME,
  age,
  arr,
  col,
  containersAndImages,
  formatLabels,
  hasCondition,
  humanDuration,
  num,
  o,
  selectorString,
  since,
  str,
} from "./cells.ts";

/** The Job printer's STATUS cell (printers.go printJob). */
function jobStatus(job: Obj): string {
  const st = o(job.status);
  if (hasCondition(st, "Complete")) return "Complete";
  if (hasCondition(st, "Failed")) return "Failed";
  if (o(job.metadata).deletionTimestamp) return "Terminating";
  if (hasCondition(st, "Suspended")) return "Suspended";
  if (hasCondition(st, "FailureTarget")) return "FailureTarget";
  return "Running";
}

function jobCells(job: Obj, now: number): Cell[] {
  const spec = o(job.spec);
  const st = o(job.status);
  const succeeded = num(st.succeeded);
  const parallelism = num(spec.parallelism);
  const completions =
    typeof spec.completions === "number"
      ? `${succeeded}/${spec.completions}`
      : parallelism > 1
        ? `${succeeded}/1 of ${parallelism}`
        : `${succeeded}/1`;
  const start = typeof st.startTime === "string" ? Date.parse(st.startTime) : undefined;
  const end = typeof st.completionTime === "string" ? Date.parse(st.completionTime) : now;
  const [cs, images] = containersAndImages(o(spec.template));
  return [
    str(o(job.metadata).name),
    jobStatus(job),
    completions,
    start === undefined ? "" : humanDuration(end - start),
    age(job, now),
    cs,
    images,
    selectorString(spec.selector),
  ];
}

/** ReplicaSet's and ReplicationController's columns; they differ in how the selector reads. */
function replicaPrinter(selector: (sel: unknown) => string): Printer {
  return {
    columns: [
      NAME,
      col("Desired", "integer"),
      col("Current", "integer"),
      col("Ready", "integer"),
      AGE,
      col("Containers", "string", 1),
      col("Images", "string", 1),
      col("Selector", "string", 1),
    ],
    cells: (rs, now) => {
      const spec = o(rs.spec);
      const st = o(rs.status);
      const [cs, images] = containersAndImages(o(spec.template));
      return [
        str(o(rs.metadata).name),
        num(spec.replicas),
        num(st.replicas),
        num(st.readyReplicas),
        age(rs, now),
        cs,
        images,
        selector(spec.selector),
      ];
    },
  };
}

export const WORKLOAD_PRINTERS: Record<string, Printer> = {
  Deployment: {
    columns: [
      NAME,
      col("Ready"),
      col("Up-to-date", "integer"),
      col("Available", "integer"),
      AGE,
      col("Containers", "string", 1),
      col("Images", "string", 1),
      col("Selector", "string", 1),
    ],
    cells: (d, now) => {
      const spec = o(d.spec);
      const st = o(d.status);
      const [cs, images] = containersAndImages(o(spec.template));
      return [
        str(o(d.metadata).name),
        `${num(st.readyReplicas)}/${num(spec.replicas)}`,
        num(st.updatedReplicas),
        num(st.availableReplicas),
        age(d, now),
        cs,
        images,
        selectorString(spec.selector),
      ];
    },
  },
  ReplicationController: replicaPrinter(formatLabels),
  DaemonSet: {
    columns: [
      NAME,
      col("Desired", "integer"),
      col("Current", "integer"),
      col("Ready", "integer"),
      col("Up-to-date", "integer"),
      col("Available", "integer"),
      col("Node Selector"),
      AGE,
      col("Containers", "string", 1),
      col("Images", "string", 1),
      col("Selector", "string", 1),
    ],
    cells: (ds, now) => {
      const spec = o(ds.spec);
      const st = o(ds.status);
      const template = o(spec.template);
      const [cs, images] = containersAndImages(template);
      return [
        str(o(ds.metadata).name),
        num(st.desiredNumberScheduled),
        num(st.currentNumberScheduled),
        num(st.numberReady),
        num(st.updatedNumberScheduled),
        num(st.numberAvailable),
        formatLabels(o(template.spec).nodeSelector),
        age(ds, now),
        cs,
        images,
        selectorString(spec.selector),
      ];
    },
  },
  StatefulSet: {
    columns: [NAME, col("Ready"), AGE, col("Containers", "string", 1), col("Images", "string", 1)],
    cells: (sts, now) => {
      const spec = o(sts.spec);
      const [cs, images] = containersAndImages(o(spec.template));
      return [
        str(o(sts.metadata).name),
        `${num(o(sts.status).readyReplicas)}/${typeof spec.replicas === "number" ? spec.replicas : 1}`,
        age(sts, now),
        cs,
        images,
      ];
    },
  },
  ControllerRevision: {
    columns: [NAME, col("Controller"), col("Revision", "integer"), AGE],
    cells: (cr, now) => {
      const ref = arr(o(cr.metadata).ownerReferences)
        .map(o)
        .find((r) => r.controller === true);
      const group = ref ? str(ref.apiVersion, "").split("/").slice(0, -1).join("/") : "";
      const controller = ref
        ? `${str(ref.kind, "").toLowerCase()}${group ? `.${group}` : ""}/${str(ref.name, "")}`
        : "<none>";
      return [str(o(cr.metadata).name), controller, num(cr.revision), age(cr, now)];
    },
  },
  Job: {
    columns: [
      NAME,
      col("Status"),
      col("Completions"),
      col("Duration"),
      AGE,
      col("Containers", "string", 1),
      col("Images", "string", 1),
      col("Selector", "string", 1),
    ],
    cells: jobCells,
  },
  CronJob: {
    columns: [
      NAME,
      col("Schedule"),
      col("Timezone"),
      col("Suspend"),
      col("Active", "integer"),
      col("Last Schedule"),
      AGE,
      col("Containers", "string", 1),
      col("Images", "string", 1),
      col("Selector", "string", 1),
    ],
    cells: (cj, now) => {
      const spec = o(cj.spec);
      const st = o(cj.status);
      const jobSpec = o(o(spec.jobTemplate).spec);
      const [cs, images] = containersAndImages(o(jobSpec.template));
      return [
        str(o(cj.metadata).name),
        str(spec.schedule, ""),
        str(spec.timeZone),
        spec.suspend === true ? "True" : "False",
        arr(st.active).length,
        since(st.lastScheduleTime, now),
        age(cj, now),
        cs,
        images,
        selectorString(jobSpec.selector),
      ];
    },
  },
  ReplicaSet: replicaPrinter(selectorString),
};
