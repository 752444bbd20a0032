import type { V1StatusCause } from "@kubernetes/client-node";
import { KIND_MODELS } from "./kind-models.ts";
import MODELS from "./k8s-types.json" with { type: "json" };
import { typeInvalid, type FieldPath } from "./field.ts";

/**
 * Field types of the served kinds, checked against upstream's OpenAPI definitions as
 * @kubernetes/client-node ships them (k8s-types.json). Nothing whose type is wrong reaches etcd, so
 * no stored object can surprise a reader (a table printer, a selector, a controller). Unknown
 * fields pass untouched (Kubernetes drops them; we keep them), `null` is "absent" as in Go's JSON.
 */

const TYPES = MODELS as Record<string, Record<string, string>>;

/** Quantities are strings in the OpenAPI document, but a plain JSON number is a quantity too. */
const QUANTITY_FIELDS = new Set([
  "V1ResourceRequirements.limits",
  "V1ResourceRequirements.requests",
  "V1VolumeResourceRequirements.limits",
  "V1VolumeResourceRequirements.requests",
  "V1NodeStatus.capacity",
  "V1NodeStatus.allocatable",
  "V1ContainerStatus.allocatedResources",
  "V1PodSpec.overhead",
  "V1EmptyDirVolumeSource.sizeLimit",
  "V1ResourceFieldSelector.divisor",
]);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isQuantity(v: unknown): boolean {
  return typeof v === "string" || (typeof v === "number" && Number.isFinite(v));
}

function check(type: string, v: unknown, path: FieldPath, causes: V1StatusCause[], secret: boolean): void {
  if (v === null || v === undefined) return;
  const bad = (expected: string): void => {
    causes.push(typeInvalid(path, v, `must be of type ${expected}`, secret));
  };
  const array = /^Array<(.*)>$/.exec(type);
  if (array) {
    if (!Array.isArray(v)) return bad("array");
    v.forEach((item, i) => check(array[1]!, item, path.index(i), causes, secret));
    return;
  }
  const map = /^\{ \[key: string\]: (.*); \}$/.exec(type);
  if (map) {
    if (!isObject(v)) return bad("object");
    for (const [k, item] of Object.entries(v)) check(map[1]!, item, path.key(k), causes, secret);
    return;
  }
  switch (type) {
    case "any":
    case "object":
      return;
    case "string":
    case "Date":
    case "V1MicroTime":
      if (typeof v !== "string") bad("string");
      return;
    case "Quantity":
      if (!isQuantity(v)) bad("string");
      return;
    case "boolean":
      if (typeof v !== "boolean") bad("boolean");
      return;
    case "IntOrString":
      if (typeof v !== "string" && !(typeof v === "number" && Number.isInteger(v))) bad("int-or-string");
      return;
    case "number":
      if (typeof v !== "number" || !Number.isFinite(v)) bad("number");
      return;
    case "number:int32":
    case "number:int64":
      if (typeof v !== "number" || !Number.isInteger(v)) bad("integer");
      else if (type === "number:int32" && (v > 2147483647 || v < -2147483648)) bad("int32");
      return;
  }
  const fields = TYPES[type];
  if (!fields) return;
  if (!isObject(v)) return bad("object");
  for (const [name, t] of Object.entries(fields)) {
    const at = `${type}.${name}`;
    if (!(name in v)) continue;
    const ft = QUANTITY_FIELDS.has(at)
      ? t.startsWith("{")
        ? "{ [key: string]: Quantity; }"
        : "Quantity"
      : t;
    check(ft, v[name], path.child(name), causes, secret);
  }
}

/** Every field whose JSON type differs from the kind's schema (metadata is checked on its own). */
export function validateTypes(kind: string, o: Record<string, unknown>, root: FieldPath): V1StatusCause[] {
  const model = KIND_MODELS[kind];
  const causes: V1StatusCause[] = [];
  if (!model) return causes;
  const fields = TYPES[model]!;
  for (const [name, t] of Object.entries(fields)) {
    if (name === "metadata" || !(name in o)) continue;
    check(
      t,
      o[name],
      root.child(name),
      causes,
      kind === "Secret" && (name === "data" || name === "stringData"),
    );
  }
  return causes;
}
