import type { V1StatusCause } from "@kubernetes/client-node";
import { FieldPath, forbidden, invalidValue, required, tooLong, typeInvalid } from "./field.ts";
import { isDns1123Label, isQualifiedName, isValidLabelValue, type NameCheck } from "./names.ts";

/** apimachinery's ValidateObjectMeta (api/validation/objectmeta.go), with the JSON types checked first. */

type Obj = Record<string, unknown>;
const META = FieldPath.root("metadata");

/** metadata.annotations may hold at most this many bytes of keys and values together. */
export const TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024;

function isObject(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A map of strings, or the causes saying where it is not one. */
function stringMap(v: unknown, path: FieldPath, causes: V1StatusCause[]): Record<string, string> | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) {
    causes.push(typeInvalid(path, v, "must be a map of string keys to string values"));
    return undefined;
  }
  let ok = true;
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== "string") {
      causes.push(invalidValue(path, val, `the value of "${k}" must be a string`));
      ok = false;
    }
  }
  return ok ? (v as Record<string, string>) : undefined;
}

export function validateLabels(v: unknown, path: FieldPath, causes: V1StatusCause[]): void {
  const labels = stringMap(v, path, causes);
  for (const [k, val] of Object.entries(labels ?? {})) {
    for (const m of isQualifiedName(k)) causes.push(invalidValue(path, k, m));
    for (const m of isValidLabelValue(val)) causes.push(invalidValue(path, val, m));
  }
}

export function validateAnnotations(v: unknown, path: FieldPath, causes: V1StatusCause[]): void {
  const annotations = stringMap(v, path, causes);
  if (!annotations) return;
  let size = 0;
  for (const [k, val] of Object.entries(annotations)) {
    for (const m of isQualifiedName(k.toLowerCase())) causes.push(invalidValue(path, k, m));
    size += Buffer.byteLength(k) + Buffer.byteLength(val);
  }
  if (size > TOTAL_ANNOTATION_SIZE_LIMIT) causes.push(tooLong(path, TOTAL_ANNOTATION_SIZE_LIMIT));
}

function validateFinalizers(v: unknown, path: FieldPath, causes: V1StatusCause[]): void {
  if (v === undefined || v === null) return;
  if (!Array.isArray(v) || v.some((f) => typeof f !== "string")) {
    causes.push(typeInvalid(path, v, "must be a list of strings"));
    return;
  }
  const list = v as string[];
  for (const f of list) for (const m of isQualifiedName(f)) causes.push(invalidValue(path, f, m));
  if (list.includes("orphan") && list.includes("foregroundDeletion"))
    causes.push(invalidValue(path, list, "finalizer orphan and foregroundDeletion cannot be both set"));
}

function validateOwnerReferences(v: unknown, path: FieldPath, causes: V1StatusCause[]): void {
  if (v === undefined || v === null) return;
  if (!Array.isArray(v)) {
    causes.push(typeInvalid(path, v, "must be a list of owner references"));
    return;
  }
  const controllers: string[] = [];
  v.forEach((raw, i) => {
    const p = path.index(i);
    if (!isObject(raw)) {
      causes.push(typeInvalid(p, raw, "must be an object"));
      return;
    }
    for (const [field, what] of [
      ["apiVersion", "version"],
      ["kind", "kind"],
      ["name", "name"],
      ["uid", "uid"],
    ] as const) {
      const val = raw[field];
      if (val !== undefined && val !== null && typeof val !== "string")
        causes.push(typeInvalid(p.child(field), val, "must be of type string"));
      else if (!val) causes.push(invalidValue(p.child(field), val ?? "", `${what} must not be empty`));
    }
    for (const field of ["controller", "blockOwnerDeletion"]) {
      const val = raw[field];
      if (val !== undefined && val !== null && typeof val !== "boolean")
        causes.push(typeInvalid(p.child(field), val, "must be of type boolean"));
    }
    if (raw.controller === true) controllers.push(String(raw.name));
  });
  if (controllers.length > 1)
    causes.push(
      invalidValue(
        path,
        v,
        `Only one reference can have Controller set to true. Found "true" in references for ${controllers.join(" and ")}`,
      ),
    );
}

function optionalString(meta: Obj, field: string, causes: V1StatusCause[]): string | undefined {
  const v = meta[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") {
    causes.push(typeInvalid(META.child(field), v, "must be of type string"));
    return undefined;
  }
  return v;
}

export interface MetaRules {
  namespaced: boolean;
  name: NameCheck;
}

/** Every problem with metadata (after the server filled name, namespace and uid). */
export function validateObjectMeta(raw: unknown, rules: MetaRules): V1StatusCause[] {
  const causes: V1StatusCause[] = [];
  if (!isObject(raw)) return [typeInvalid(META, raw, "must be an object")];
  const generateName = optionalString(raw, "generateName", causes);
  if (generateName)
    for (const m of rules.name(generateName, true))
      causes.push(invalidValue(META.child("generateName"), generateName, m));
  const name = optionalString(raw, "name", causes);
  if (!name) {
    if (raw.name === undefined || raw.name === null || raw.name === "")
      causes.push(required(META.child("name"), "name or generateName is required"));
  } else for (const m of rules.name(name, false)) causes.push(invalidValue(META.child("name"), name, m));
  const namespace = optionalString(raw, "namespace", causes);
  if (rules.namespaced) {
    if (namespace)
      for (const m of isDns1123Label(namespace))
        causes.push(invalidValue(META.child("namespace"), namespace, m));
  } else if (namespace) causes.push(forbidden(META.child("namespace"), "not allowed on this type"));
  for (const field of ["uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "selfLink"])
    optionalString(raw, field, causes);
  for (const field of ["generation", "deletionGracePeriodSeconds"]) {
    const v = raw[field];
    if (v === undefined || v === null) continue;
    if (typeof v !== "number" || !Number.isInteger(v))
      causes.push(typeInvalid(META.child(field), v, "must be of type integer"));
    else if (v < 0) causes.push(invalidValue(META.child(field), v, "must be greater than or equal to 0"));
  }
  validateLabels(raw.labels, META.child("labels"), causes);
  validateAnnotations(raw.annotations, META.child("annotations"), causes);
  validateOwnerReferences(raw.ownerReferences, META.child("ownerReferences"), causes);
  validateFinalizers(raw.finalizers, META.child("finalizers"), causes);
  return causes;
}
