/** Printer columns of PodDisruptionBudget and HorizontalPodAutoscaler (kubectl's internalversion printers). */
import type { TableColumn } from "./table.ts";

type Obj = Record<string, unknown>;
type Cell = string | number;

const o = (v: unknown): Obj => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const text = (v: unknown, dflt: string): string =>
  typeof v === "string" && v !== "" ? v : typeof v === "number" ? String(v) : dflt;

function col(name: string, type: TableColumn["type"] = "string", format = ""): TableColumn {
  return { name, type, format, description: name, priority: 0 };
}

/** One metric of an HPA as kubectl shows it: `cpu: 45%/50%`, `<unknown>` before the first reading. */
function metricText(spec: Obj, current: Obj | undefined): string {
  const type = spec.type;
  const field = type === "ContainerResource" ? "containerResource" : String(type ?? "").toLowerCase();
  const src = o(spec[field]);
  const cur = current ? o(current[field]) : {};
  const target = o(src.target);
  const now = o(cur.current);
  if (type === "Resource" || type === "ContainerResource") {
    const name = text(src.name, "<unknown>");
    if (target.averageUtilization !== undefined) {
      const c = typeof now.averageUtilization === "number" ? `${now.averageUtilization}%` : "<unknown>";
      return `${name}: ${c}/${text(target.averageUtilization, "?")}%`;
    }
    return `${name}: ${text(now.averageValue, "<unknown>")}/${text(target.averageValue, "<unknown>")}`;
  }
  const name = text(o(src.metric).name, "<unknown>");
  const value = target.type === "Value" ? "value" : "averageValue";
  return `${name}: ${text(now[value], "<unknown>")}/${text(target[value], "<unknown>")}`;
}

function hpaTargets(hpa: Obj): string {
  const spec = o(hpa.spec);
  const status = o(hpa.status);
  if (spec.targetCPUUtilizationPercentage !== undefined || spec.metrics === undefined) {
    // autoscaling/v1
    const cur = status.currentCPUUtilizationPercentage;
    const target = spec.targetCPUUtilizationPercentage;
    if (target === undefined) return "<none>";
    return `cpu: ${typeof cur === "number" ? `${cur}%` : "<unknown>"}/${text(target, "?")}%`;
  }
  const metrics = arr(spec.metrics).map(o);
  if (metrics.length === 0) return "<none>";
  const current = arr(status.currentMetrics).map(o);
  const parts = metrics.map((m, i) => metricText(m, current[i]?.type === m.type ? current[i] : undefined));
  return parts.length > 2
    ? `${parts.slice(0, 2).join(", ")} + ${parts.length - 2} more...`
    : parts.join(", ");
}

export interface PolicyPrinter {
  columns: TableColumn[];
  cells(obj: Obj, age: (obj: Obj) => string): Cell[];
}

const NAME = col("Name", "string", "name");
const AGE = col("Age");

export const POLICY_PRINTERS: Record<string, PolicyPrinter> = {
  PodDisruptionBudget: {
    columns: [NAME, col("Min Available"), col("Max Unavailable"), col("Allowed Disruptions", "integer"), AGE],
    cells: (pdb, age) => {
      const spec = o(pdb.spec);
      const allowed = o(pdb.status).disruptionsAllowed;
      return [
        text(o(pdb.metadata).name, "<none>"),
        text(spec.minAvailable, "N/A"),
        text(spec.maxUnavailable, "N/A"),
        typeof allowed === "number" ? allowed : 0,
        age(pdb),
      ];
    },
  },
  HorizontalPodAutoscaler: {
    columns: [
      NAME,
      col("Reference"),
      col("Targets"),
      col("MinPods", "string"),
      col("MaxPods", "integer"),
      col("Replicas", "integer"),
      AGE,
    ],
    cells: (hpa, age) => {
      const spec = o(hpa.spec);
      const ref = o(spec.scaleTargetRef);
      const replicas = o(hpa.status).currentReplicas;
      return [
        text(o(hpa.metadata).name, "<none>"),
        `${text(ref.kind, "")}/${text(ref.name, "")}`,
        hpaTargets(hpa),
        text(spec.minReplicas, "<unset>"),
        typeof spec.maxReplicas === "number" ? spec.maxReplicas : 0,
        typeof replicas === "number" ? replicas : 0,
        age(hpa),
      ];
    },
  },
};
