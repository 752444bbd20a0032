/** Server-side printing: the meta.k8s.io/v1 Table that `kubectl get` asks for (`as=Table`). */
import { POLICY_PRINTERS } from "./table-policy.ts";
import { RBAC_PRINTERS } from "./table-rbac.ts";
import type { Cell, Obj, Printer, Table } from "./table/cells.ts";
import { AGE, NAME, age, o, str } from "./table/cells.ts";
import { CORE_PRINTERS } from "./table/core.ts";
import { WORKLOAD_PRINTERS } from "./table/workloads.ts";

export type { Table, TableColumn, TableRow } from "./table/cells.ts";
export { humanDuration } from "./table/cells.ts";

const PRINTERS: Record<string, Printer> = {
  ...CORE_PRINTERS,
  ...WORKLOAD_PRINTERS,
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
