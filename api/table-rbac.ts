/** Printer columns of Role, ClusterRole, RoleBinding and ClusterRoleBinding (kubectl's internalversion printers). */
import type { TableColumn } from "./table.ts";

type Obj = Record<string, unknown>;
type Cell = string | number;

const o = (v: unknown): Obj => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const text = (v: unknown): string => (typeof v === "string" ? v : "");

function col(name: string, type: TableColumn["type"] = "string", priority = 0, format = ""): TableColumn {
  return { name, type, format, description: name, priority };
}

const NAME = col("Name", "string", 0, "name");

/** `Created At` as upstream prints it: the RFC 3339 creation timestamp. */
function createdAt(x: Obj): string {
  return text(o(x.metadata).creationTimestamp) || "<unknown>";
}

/** Users, groups and service accounts of a binding, as kubectl's wide columns (`ns/name` for SAs). */
function subjects(b: Obj, kind: string): string {
  const out: string[] = [];
  for (const raw of arr(b.subjects)) {
    const s = o(raw);
    if (s.kind !== kind) continue;
    out.push(kind === "ServiceAccount" ? `${text(s.namespace)}/${text(s.name)}` : text(s.name));
  }
  return out.join(", ");
}

function bindingCells(b: Obj, age: (x: Obj) => string): Cell[] {
  const ref = o(b.roleRef);
  return [
    text(o(b.metadata).name),
    `${text(ref.kind)}/${text(ref.name)}`,
    age(b),
    subjects(b, "User"),
    subjects(b, "Group"),
    subjects(b, "ServiceAccount"),
  ];
}

const BINDING_COLUMNS = [
  NAME,
  col("Role"),
  col("Age"),
  col("Users", "string", 1),
  col("Groups", "string", 1),
  col("ServiceAccounts", "string", 1),
];
const ROLE_COLUMNS = [NAME, col("Created At", "date")];

export const RBAC_PRINTERS: Record<
  string,
  { columns: TableColumn[]; cells: (x: Obj, age: (y: Obj) => string) => Cell[] }
> = {
  Role: { columns: ROLE_COLUMNS, cells: (r) => [text(o(r.metadata).name), createdAt(r)] },
  ClusterRole: { columns: ROLE_COLUMNS, cells: (r) => [text(o(r.metadata).name), createdAt(r)] },
  RoleBinding: { columns: BINDING_COLUMNS, cells: bindingCells },
  ClusterRoleBinding: { columns: BINDING_COLUMNS, cells: bindingCells },
};
