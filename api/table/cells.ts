/** The pieces every printer of api/table/ is made of: columns, defensive readers of stored objects, ages. */

export type Obj = Record<string, unknown>;
export type Cell = string | number;

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

export function col(
  name: string,
  type: TableColumn["type"] = "string",
  priority = 0,
  format = "",
): TableColumn {
  return { name, type, format, description: name, priority };
}

export const o = (v: unknown): Obj =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : {};
export const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
/** A scalar as text. A stored object is not trusted to be well typed: anything else prints as dflt. */
export const str = (v: unknown, dflt = "<none>"): string =>
  typeof v === "string"
    ? v === ""
      ? dflt
      : v
    : typeof v === "number" || typeof v === "boolean"
      ? `${v}`
      : dflt;
export const num = (v: unknown): number => (typeof v === "number" ? v : 0);

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

export function age(obj: Obj, now: number): string {
  const ts = o(obj.metadata).creationTimestamp;
  return typeof ts === "string" ? humanDuration(now - Date.parse(ts)) : "<unknown>";
}

export function containersAndImages(template: Obj): [string, string] {
  const cs = arr(o(template.spec).containers).map(o);
  return [cs.map((c) => str(c.name, "")).join(","), cs.map((c) => str(c.image, "")).join(",")];
}

export function selectorString(sel: unknown): string {
  const labels = o(o(sel).matchLabels);
  const s = Object.entries(labels)
    .map(([k, v]) => `${k}=${str(v, "")}`)
    .join(",");
  return s || "<none>";
}

/** At most three items, then ` + N more...`, or `<unset>` (upstream's discovery printers). */
export function firstThree(items: string[]): string {
  if (items.length === 0) return "<unset>";
  return items.length > 3 ? `${items.slice(0, 3).join(",")} + ${items.length - 3} more...` : items.join(",");
}

/** apimachinery's labels.FormatLabels: `k=v,...` sorted, `<none>` when empty. */
export function formatLabels(m: unknown): string {
  const s = Object.entries(o(m))
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${str(v, "")}`)
    .join(",");
  return s || "<none>";
}

/** `<none>` or the human age of an RFC 3339 time (printers' translateTimestampSince). */
export function since(ts: unknown, now: number): string {
  return typeof ts === "string" ? humanDuration(now - Date.parse(ts)) : "<none>";
}

export const hasCondition = (status: Obj, type: string): boolean =>
  arr(status.conditions)
    .map(o)
    .some((c) => c.type === type && c.status === "True");

export interface Printer {
  columns: TableColumn[];
  cells(obj: Obj, now: number): Cell[];
}

export const NAME = col("Name", "string", 0, "name");
export const AGE = col("Age", "string");
