/** Server-side printing: the meta.k8s.io/v1 Table that `kubectl get` asks for (`as=Table`). */
import { POLICY_PRINTERS } from "./table-policy.ts";
import { RBAC_PRINTERS } from "./table-rbac.ts";

type Obj = Record<string, unknown>;
type Cell = string | number;

export interface TableColumn {
  name: string;
  type: "string" | "integer" | "date";
  format: string;
  description: string;
  priority: number;
}

export interface TableRow {
  cells: Cell[];
  object: Obj;
}

export interface Table {
  kind: "Table";
  apiVersion: "meta.k8s.io/v1";
  metadata: { resourceVersion?: string; continue?: string };
  columnDefinitions: TableColumn[];
  rows: TableRow[];
}

function col(name: string, type: TableColumn["type"] = "string", priority = 0, format = ""): TableColumn {
  return { name, type, format, description: name, priority };
}

const o = (v: unknown): Obj => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
/** A scalar as text. A stored object is not trusted to be well typed: anything else prints as dflt. */
const str = (v: unknown, dflt = "<none>"): string =>
  typeof v === "string"
    ? v === ""
      ? dflt
      : v
    : typeof v === "number" || typeof v === "boolean"
      ? `${v}`
      : dflt;
const num = (v: unknown): number => (typeof v === "number" ? v : 0);

/** kubectl's short age format (apimachinery's duration.HumanDuration). */
export function humanDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  const d = Math.floor(h / 24);
  if (h < 24 * 8) return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`;
  if (d < 365 * 2) return `${d}d`;
  const y = Math.floor(d / 365);
  if (d < 365 * 8) return d % 365 === 0 ? `${y}y` : `${y}y${d % 365}d`;
  return `${y}y`;
}

function age(obj: Obj, now: number): string {
  const ts = o(obj.metadata).creationTimestamp;
  return typeof ts === "string" ? humanDuration(now - Date.parse(ts)) : "<unknown>";
}

function podCells(pod: Obj, now: number): Cell[] {
  const spec = o(pod.spec);
  const status = o(pod.status);
  const statuses = arr(status.containerStatuses).map(o);
  const total = arr(spec.containers).length;
  const ready = statuses.filter((c) => c.ready === true).length;
  const inits = arr(status.initContainerStatuses).map(o);
  let restarts = statuses.reduce((n, c) => n + num(c.restartCount), 0);
  let reason = str(status.reason, "") || str(status.phase, "Unknown");
  // init containers first, as kubectl's printer does: Init:N/M, Init:<reason>, Init:ExitCode:N
  let initializing = false;
  for (const [i, c] of inits.entries()) {
    restarts += num(c.restartCount);
    const waiting = o(o(c.state).waiting);
    const terminated = o(o(c.state).terminated);
    if (c.state && o(c.state).terminated && num(terminated.exitCode) === 0) continue;
    initializing = true;
    if (o(c.state).terminated)
      reason = terminated.reason
        ? `Init:${str(terminated.reason, "")}`
        : `Init:ExitCode:${num(terminated.exitCode)}`;
    else if (waiting.reason && waiting.reason !== "PodInitializing")
      reason = `Init:${str(waiting.reason, "")}`;
    else reason = `Init:${i}/${arr(spec.initContainers).length}`;
    break;
  }
  for (const c of initializing ? [] : statuses) {
    const state = o(c.state);
    const waiting = o(state.waiting);
    const terminated = o(state.terminated);
    if (waiting.reason) reason = str(waiting.reason, "");
    else if (terminated.reason) reason = str(terminated.reason, "");
  }
  if (o(pod.metadata).deletionTimestamp) reason = "Terminating";
  return [
    str(o(pod.metadata).name),
    `${ready}/${total}`,
    reason,
    restarts,
    age(pod, now),
    str(status.podIP),
    str(spec.nodeName),
    "<none>",
    "<none>",
  ];
}

function containersAndImages(template: Obj): [string, string] {
  const cs = arr(o(template.spec).containers).map(o);
  return [cs.map((c) => str(c.name, "")).join(","), cs.map((c) => str(c.image, "")).join(",")];
}

function selectorString(sel: unknown): string {
  const labels = o(o(sel).matchLabels);
  const s = Object.entries(labels)
    .map(([k, v]) => `${k}=${str(v, "")}`)
    .join(",");
  return s || "<none>";
}

function servicePorts(svc: Obj): string {
  const ports = arr(o(svc.spec).ports).map(o);
  if (ports.length === 0) return "<none>";
  return ports
    .map((p) => `${str(p.port, "")}${p.nodePort ? `:${str(p.nodePort, "")}` : ""}/${str(p.protocol, "TCP")}`)
    .join(",");
}

function nodeStatus(node: Obj): string {
  const ready = arr(o(node.status).conditions)
    .map(o)
    .find((c) => c.type === "Ready");
  let s = ready?.status === "True" ? "Ready" : ready ? "NotReady" : "Unknown";
  if (o(node.spec).unschedulable) s += ",SchedulingDisabled";
  return s;
}

function nodeRoles(node: Obj): string {
  const roles = Object.keys(o(o(node.metadata).labels))
    .filter((k) => k.startsWith("node-role.kubernetes.io/"))
    .map((k) => k.slice("node-role.kubernetes.io/".length));
  return roles.length ? roles.sort().join(",") : "<none>";
}

function endpointsList(ep: Obj): string {
  const out: string[] = [];
  for (const subset of arr(ep.subsets).map(o)) {
    for (const a of arr(subset.addresses).map(o)) {
      const ports = arr(subset.ports).map(o);
      if (ports.length === 0) out.push(str(a.ip, ""));
      for (const p of ports) out.push(`${str(a.ip, "")}:${str(p.port, "")}`);
    }
  }
  if (out.length === 0) return "<none>";
  return out.length > 3 ? `${out.slice(0, 3).join(",")} + ${out.length - 3} more...` : out.join(",");
}

/** At most three items, then ` + N more...`, or `<unset>` (upstream's discovery printers). */
function firstThree(items: string[]): string {
  if (items.length === 0) return "<unset>";
  return items.length > 3 ? `${items.slice(0, 3).join(",")} + ${items.length - 3} more...` : items.join(",");
}

/** apimachinery's labels.FormatLabels: `k=v,...` sorted, `<none>` when empty. */
function formatLabels(m: unknown): string {
  const s = Object.entries(o(m))
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${str(v, "")}`)
    .join(",");
  return s || "<none>";
}

/** `<none>` or the human age of an RFC 3339 time (printers' translateTimestampSince). */
function since(ts: unknown, now: number): string {
  return typeof ts === "string" ? humanDuration(now - Date.parse(ts)) : "<none>";
}

const hasCondition = (status: Obj, type: string): boolean =>
  arr(status.conditions)
    .map(o)
    .some((c) => c.type === type && c.status === "True");

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

interface Printer {
  columns: TableColumn[];
  cells(obj: Obj, now: number): Cell[];
}

const NAME = col("Name", "string", 0, "name");
const AGE = col("Age", "string");

const PRINTERS: Record<string, Printer> = {
  Pod: {
    columns: [
      NAME,
      col("Ready"),
      col("Status"),
      col("Restarts", "integer"),
      AGE,
      col("IP", "string", 1),
      col("Node", "string", 1),
      col("Nominated Node", "string", 1),
      col("Readiness Gates", "string", 1),
    ],
    cells: podCells,
  },
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
  ReplicationController: {
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
    cells: (rc, now) => {
      const spec = o(rc.spec);
      const st = o(rc.status);
      const [cs, images] = containersAndImages(o(spec.template));
      return [
        str(o(rc.metadata).name),
        num(spec.replicas),
        num(st.replicas),
        num(st.readyReplicas),
        age(rc, now),
        cs,
        images,
        formatLabels(spec.selector),
      ];
    },
  },
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
  ReplicaSet: {
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
        selectorString(spec.selector),
      ];
    },
  },
  Node: {
    columns: [
      NAME,
      col("Status"),
      col("Roles"),
      AGE,
      col("Version"),
      col("Internal-IP", "string", 1),
      col("External-IP", "string", 1),
      col("OS-Image", "string", 1),
      col("Kernel-Version", "string", 1),
      col("Container-Runtime", "string", 1),
    ],
    cells: (n, now) => {
      const st = o(n.status);
      const info = o(st.nodeInfo);
      const addr = (t: string): string =>
        str(
          arr(st.addresses)
            .map(o)
            .find((a) => a.type === t)?.address,
        );
      return [
        str(o(n.metadata).name),
        nodeStatus(n),
        nodeRoles(n),
        age(n, now),
        str(info.kubeletVersion, ""),
        addr("InternalIP"),
        addr("ExternalIP"),
        str(info.osImage, "<unknown>"),
        str(info.kernelVersion, "<unknown>"),
        str(info.containerRuntimeVersion, "<unknown>"),
      ];
    },
  },
  Service: {
    columns: [
      NAME,
      col("Type"),
      col("Cluster-IP"),
      col("External-IP"),
      col("Port(s)"),
      AGE,
      col("Selector", "string", 1),
    ],
    cells: (s, now) => {
      const spec = o(s.spec);
      const ext = arr(spec.externalIPs).join(",") || (spec.type === "LoadBalancer" ? "<pending>" : "<none>");
      const sel =
        Object.entries(o(spec.selector))
          .map(([k, v]) => `${k}=${str(v, "")}`)
          .join(",") || "<none>";
      return [
        str(o(s.metadata).name),
        str(spec.type, "ClusterIP"),
        str(spec.clusterIP),
        ext,
        servicePorts(s),
        age(s, now),
        sel,
      ];
    },
  },
  Namespace: {
    columns: [NAME, col("Status"), AGE],
    cells: (n, now) => [str(o(n.metadata).name), str(o(n.status).phase, "Active"), age(n, now)],
  },
  Endpoints: {
    columns: [NAME, col("Endpoints"), AGE],
    cells: (e, now) => [str(o(e.metadata).name), endpointsList(e), age(e, now)],
  },
  EndpointSlice: {
    columns: [NAME, col("AddressType"), col("Ports"), col("Endpoints"), AGE],
    cells: (e, now) => [
      str(o(e.metadata).name),
      str(e.addressType, ""),
      firstThree(arr(e.ports).map((p) => str(o(p).port, "<unset>"))),
      firstThree(arr(e.endpoints).flatMap((x) => arr(o(x).addresses).map((a) => str(a, "")))),
      age(e, now),
    ],
  },
  ConfigMap: {
    columns: [NAME, col("Data", "integer"), AGE],
    cells: (c, now) => [
      str(o(c.metadata).name),
      Object.keys(o(c.data)).length + Object.keys(o(c.binaryData)).length,
      age(c, now),
    ],
  },
  Secret: {
    columns: [NAME, col("Type"), col("Data", "integer"), AGE],
    cells: (s, now) => [
      str(o(s.metadata).name),
      str(s.type, "Opaque"),
      Object.keys(o(s.data)).length,
      age(s, now),
    ],
  },
  ServiceAccount: {
    columns: [NAME, col("Secrets", "integer"), AGE],
    cells: (s, now) => [str(o(s.metadata).name), arr(s.secrets).length, age(s, now)],
  },
  Event: {
    columns: [col("Last Seen"), col("Type"), col("Reason"), col("Object"), col("Message"), NAME],
    cells: (e, now) => {
      const last = e.lastTimestamp ?? e.eventTime ?? o(e.metadata).creationTimestamp;
      const inv = o(e.involvedObject);
      return [
        typeof last === "string" ? humanDuration(now - Date.parse(last)) : "<unknown>",
        str(e.type, "Normal"),
        str(e.reason, ""),
        `${str(inv.kind, "").toLowerCase()}/${str(inv.name, "")}`,
        str(e.message, ""),
        str(o(e.metadata).name),
      ];
    },
  },
  Lease: {
    columns: [NAME, col("Holder"), AGE],
    cells: (l, now) => [str(o(l.metadata).name), str(o(l.spec).holderIdentity, ""), age(l, now)],
  },
  ...Object.fromEntries(
    [...Object.entries(POLICY_PRINTERS), ...Object.entries(RBAC_PRINTERS)].map(([kind, p]) => [
      kind,
      { columns: p.columns, cells: (x: Obj, now: number) => p.cells(x, (y) => age(y, now)) },
    ]),
  ),
};

/** A printer that trips over an unexpected value prints the name and blanks, never throws out of a list or watch. */
function safeCells(printer: Printer, item: Obj, now: number): Cell[] {
  try {
    return printer.cells(item, now);
  } catch {
    return printer.columns.map((c, i) =>
      i === 0 ? str(o(item.metadata).name) : c.type === "integer" ? 0 : "<unknown>",
    );
  }
}

function partialMetadata(obj: Obj): Obj {
  return { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: o(obj.metadata) };
}

/** Renders objects of one kind as a Table; includeObject "Object" embeds the full objects. */
export function toTable(
  kind: string,
  items: Obj[],
  opts: { now?: number; resourceVersion?: string; continue?: string; includeObject?: string } = {},
): Table {
  const now = opts.now ?? Date.now();
  const printer: Printer = PRINTERS[kind] ?? {
    columns: [NAME, AGE],
    cells: (x, n) => [str(o(x.metadata).name), age(x, n)],
  };
  const meta: Table["metadata"] = {};
  if (opts.resourceVersion) meta.resourceVersion = opts.resourceVersion;
  if (opts.continue) meta.continue = opts.continue;
  return {
    kind: "Table",
    apiVersion: "meta.k8s.io/v1",
    metadata: meta,
    columnDefinitions: printer.columns,
    rows: items.map((item) => ({
      cells: safeCells(printer, item, now),
      object:
        opts.includeObject === "Object" ? item : opts.includeObject === "None" ? {} : partialMetadata(item),
    })),
  };
}
