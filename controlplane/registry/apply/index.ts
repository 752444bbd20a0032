/**
 * Server-side apply (the application/apply-patch+yaml patch type): the applied configuration is
 * merged into the live object by the kind's schema (list types and map keys from upstream's
 * OpenAPI), the applier owns exactly the fields it applied, fields it applied before and no
 * longer does are removed unless another manager owns them, and changing a value another manager
 * owns is a conflict (409) unless forced, which takes the field from that manager.
 */
import { groupVersion, type ResourceInfo } from "../../../api/resources.ts";
import { ApiError } from "../../../api/status.ts";
import type { KObject } from "../types.ts";
import {
  changedFields,
  existingIn,
  FieldSet,
  fieldsOf,
  mergeApplied,
  removeFields,
  renderPath,
} from "./fieldset.ts";
import {
  entry,
  now,
  ownable,
  readManagedFields,
  shapeForKind,
  type FieldManager,
  type ManagedFieldsEntry,
} from "./managed-fields.ts";
import { isPlainObject } from "./types.ts";

export type { FieldManager, FieldsWrite, ManagedFieldsEntry } from "./managed-fields.ts";
export { managedFieldsAfterWrite } from "./managed-fields.ts";

/** The 409 of an apply that would change fields other managers own (not a write conflict: no retry). */
export class ApplyConflict extends ApiError {}

function describeManager(e: ManagedFieldsEntry): string {
  let out = JSON.stringify(e.manager);
  if (e.subresource) out += ` with subresource ${JSON.stringify(e.subresource)}`;
  return `${out} using ${e.apiVersion}`;
}

function conflictError(
  info: ResourceInfo,
  name: string,
  found: [ManagedFieldsEntry, FieldSet][],
): ApplyConflict {
  const causes: { reason: string; message: string; field: string }[] = [];
  const parts: string[] = [];
  let count = 0;
  for (const [e, set] of found) {
    const fields = set.paths().map(renderPath);
    count += fields.length;
    const who = describeManager(e);
    for (const f of fields)
      causes.push({ reason: "FieldManagerConflict", message: `conflict with ${who}`, field: f });
    parts.push(
      fields.length === 1
        ? `conflict with ${who}: ${fields[0]}`
        : `conflicts with ${who}:\n- ${fields.join("\n- ")}`,
    );
  }
  const head = `Apply failed with ${count} conflict${count === 1 ? "" : "s"}: `;
  return new ApplyConflict(409, "Conflict", head + parts.join("\n"), {
    name,
    group: info.group,
    kind: info.plural,
    causes,
  });
}

/** The applied configuration without what a write of this subresource cannot set. */
function applicable(info: ResourceInfo, config: KObject, subresource: string | undefined): KObject {
  const out = structuredClone(config);
  const meta = isPlainObject(out.metadata) ? out.metadata : {};
  for (const k of ["uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink"])
    delete meta[k];
  out.metadata = meta;
  if (subresource === "status") {
    for (const k of Object.keys(out))
      if (!["apiVersion", "kind", "metadata", "status"].includes(k)) delete out[k];
    out.metadata = { name: meta.name };
  } else if (info.status) delete out.status;
  return out;
}

/**
 * Applies `config` for `fm` over `live` (undefined: the object does not exist yet). Returns the
 * object to write (its metadata.managedFields set) or throws ApplyConflict.
 */
export function applyConfig(
  info: ResourceInfo,
  live: KObject | undefined,
  config: KObject,
  fm: FieldManager,
  force: boolean,
): KObject {
  const shape = shapeForKind(info);
  const cfg = applicable(info, config, fm.subresource);
  const applied = ownable(info, fieldsOf(cfg, shape), fm.subresource);
  const entries = readManagedFields(live);
  const mineAt = entries.findIndex(
    (e) =>
      e.manager === fm.manager && e.operation === "Apply" && (e.subresource ?? "") === (fm.subresource ?? ""),
  );
  const sets = entries.map((e) => FieldSet.fromFieldsV1(e.fieldsV1));
  let othersOwn = new FieldSet();
  sets.forEach((s, i) => {
    if (i !== mineAt) othersOwn = othersOwn.union(s);
  });
  const base: KObject = live ? structuredClone(live) : { metadata: {} };
  delete base.metadata.managedFields;
  if (mineAt >= 0) removeFields(base, sets[mineAt]!.difference(applied).difference(othersOwn), shape);
  const merged = mergeApplied(base, cfg, shape) as KObject;

  const changed = ownable(info, changedFields(live ?? {}, merged, shape), fm.subresource);
  const conflicts: [ManagedFieldsEntry, FieldSet][] = [];
  sets.forEach((s, i) => {
    if (i === mineAt) return;
    const c = s.intersection(changed);
    if (!c.isEmpty()) conflicts.push([entries[i]!, c]);
  });
  if (conflicts.length && !force)
    throw conflictError(info, live?.metadata.name ?? String(cfg.metadata.name ?? ""), conflicts);

  const out: ManagedFieldsEntry[] = [];
  const mine = (time: string): ManagedFieldsEntry => entry(info, fm, "Apply", applied, time);
  entries.forEach((e, i) => {
    if (i === mineAt) {
      if (applied.isEmpty()) return; // an applier that applies nothing manages nothing
      const same = sets[i]!.difference(applied).isEmpty() && applied.difference(sets[i]!).isEmpty();
      out.push(mine(same && e.time ? e.time : now()));
      return;
    }
    const kept = existingIn(force ? sets[i]!.difference(changed) : sets[i]!, merged, shape);
    if (!kept.isEmpty()) out.push({ ...e, fieldsV1: kept.toFieldsV1() });
  });
  if (mineAt < 0 && !applied.isEmpty()) out.push(mine(now()));
  merged.apiVersion = groupVersion(info);
  merged.kind = info.kind;
  if (out.length) merged.metadata.managedFields = out;
  else delete merged.metadata.managedFields;
  return merged;
}
