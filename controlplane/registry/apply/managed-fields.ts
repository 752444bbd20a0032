/**
 * metadata.managedFields, as kube-apiserver's field manager keeps it: one entry per manager,
 * operation (Apply or Update) and subresource, holding the fields that manager set. Ordinary
 * writes (create, update, patch) record what they changed as an Update and take it from the
 * others; server-side apply (./index.ts) owns exactly what was applied and may conflict.
 */
import { groupVersion, type ResourceInfo } from "../../../api/resources.ts";
import { definitionName, definitions } from "../../openapi/definitions.ts";
import type { KObject } from "../types.ts";
import { changedFields, existingIn, FieldSet } from "./fieldset.ts";
import { isPlainObject, shapeOf, UNTYPED, type Shape } from "./types.ts";

export interface ManagedFieldsEntry {
  manager: string;
  operation: "Apply" | "Update";
  apiVersion: string;
  time?: string;
  fieldsType: "FieldsV1";
  fieldsV1: Record<string, unknown>;
  subresource?: string;
}

/** Who writes: the field manager, and the subresource written ("" or undefined: the object). */
export interface FieldManager {
  manager: string;
  subresource?: string;
}

/** What the store does with managedFields on a write. */
export type FieldsWrite =
  | ({ operation: "Update" } & FieldManager)
  /** Already computed (server-side apply). */
  | { operation: "Apply"; managedFields: ManagedFieldsEntry[] };

export function shapeForKind(info: ResourceInfo): Shape {
  const name = definitionName(info);
  return name ? shapeOf(definitions()[name]) : UNTYPED;
}

/** Fields no manager owns (upstream's stripped set). */
const STRIPPED_META = [
  "name",
  "namespace",
  "uid",
  "resourceVersion",
  "generation",
  "creationTimestamp",
  "deletionTimestamp",
  "deletionGracePeriodSeconds",
  "selfLink",
  "managedFields",
  "generateName",
];

/**
 * The fields a manager can own in a write: no identity, and for a kind with a status subresource
 * no status in a write of the object, nothing but status in a write of status.
 */
export function ownable(info: ResourceInfo, set: FieldSet, subresource: string | undefined): FieldSet {
  const out = set.clone();
  out.children.delete("f:apiVersion");
  out.children.delete("f:kind");
  const meta = out.children.get("f:metadata");
  if (meta) {
    for (const k of STRIPPED_META) meta.children.delete(`f:${k}`);
    if (meta.isEmpty()) out.children.delete("f:metadata");
  }
  if (subresource === "status") {
    for (const k of [...out.children.keys()]) if (k !== "f:status") out.children.delete(k);
  } else if (info.status) out.children.delete("f:status");
  return out;
}

export function readManagedFields(obj: KObject | undefined): ManagedFieldsEntry[] {
  const mf = obj?.metadata?.managedFields;
  if (!Array.isArray(mf)) return [];
  return mf.filter(
    (e): e is ManagedFieldsEntry =>
      isPlainObject(e) &&
      typeof e.manager === "string" &&
      (e.operation === "Apply" || e.operation === "Update"),
  );
}

function sameEntry(e: ManagedFieldsEntry, manager: string, operation: string, subresource?: string): boolean {
  return e.manager === manager && e.operation === operation && (e.subresource ?? "") === (subresource ?? "");
}

export function entry(
  info: ResourceInfo,
  fm: FieldManager,
  operation: "Apply" | "Update",
  set: FieldSet,
  time: string,
): ManagedFieldsEntry {
  const e: ManagedFieldsEntry = {
    manager: fm.manager,
    operation,
    apiVersion: groupVersion(info),
    time,
    fieldsType: "FieldsV1",
    fieldsV1: set.toFieldsV1(),
  };
  if (fm.subresource) e.subresource = fm.subresource;
  return e;
}

export function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, "Z");
}

/**
 * managedFields after an ordinary write of `next` over `current` (undefined on create): the
 * writer's Update entry gains what changed, every other entry loses it, and fields that are gone
 * from the object leave every entry.
 */
export function afterUpdate(
  info: ResourceInfo,
  current: KObject | undefined,
  next: KObject,
  fm: FieldManager,
): ManagedFieldsEntry[] {
  const shape = shapeForKind(info);
  const changed = ownable(info, changedFields(current, next, shape), fm.subresource);
  const out: ManagedFieldsEntry[] = [];
  let mine: FieldSet | undefined;
  let mineTime: string | undefined;
  for (const e of readManagedFields(current)) {
    const set = FieldSet.fromFieldsV1(e.fieldsV1);
    if (sameEntry(e, fm.manager, "Update", fm.subresource)) {
      mine = set;
      mineTime = e.time;
      continue;
    }
    const kept = existingIn(set.difference(changed), next, shape);
    if (kept.isEmpty()) continue;
    out.push({ ...e, fieldsV1: kept.toFieldsV1() });
  }
  const after = existingIn((mine ?? new FieldSet()).union(changed), next, shape);
  if (!after.isEmpty()) {
    const keepTime = mine !== undefined && changed.isEmpty() ? mineTime : undefined;
    out.push(entry(info, fm, "Update", after, keepTime ?? now()));
  }
  return out;
}

/** metadata.managedFields for a write the store is about to make; undefined: none. */
export function managedFieldsAfterWrite(
  info: ResourceInfo,
  current: KObject | undefined,
  next: KObject,
  fields: FieldsWrite | undefined,
): ManagedFieldsEntry[] | undefined {
  let out: ManagedFieldsEntry[];
  if (!fields) out = readManagedFields(current);
  else if (fields.operation === "Apply") out = fields.managedFields;
  else out = afterUpdate(info, current, next, fields);
  return out.length ? out : undefined;
}
