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

/** A field's type, parsed once from the generator's text ("Array<V1Container>", "{ [key: string]: string; }"). */
type Parsed =
  | { list: Parsed }
  | { map: Parsed }
  | { primitive: string }
  | { model: Map<string, Parsed> | undefined; name: string };

const parsedTypes = new Map<string, Parsed>();
const models = new Map<string, Map<string, Parsed>>();

function parse(type: string): Parsed {
  let p = parsedTypes.get(type);
  if (p) return p;
  const array = /^Array<(.*)>$/.exec(type);
  const map = /^\{ \[key: string\]: (.*); \}$/.exec(type);
  if (array) p = { list: parse(array[1]!) };
  else if (map) p = { map: parse(map[1]!) };
  else if (TYPES[type]) p = { model: undefined, name: type };
  else p = { primitive: type };
  parsedTypes.set(type, p);
  return p;
}

function modelFields(name: string): Map<string, Parsed> {
  let fields = models.get(name);
  if (!fields) {
    fields = new Map();
    models.set(name, fields);
    for (const [field, t] of Object.entries(TYPES[name] ?? {})) {
      const quantity = QUANTITY_FIELDS.has(`${name}.${field}`);
      fields.set(
        field,
        parse(quantity ? (t.startsWith("{") ? "{ [key: string]: Quantity; }" : "Quantity") : t),
      );
    }
  }
  return fields;
}

function primitiveProblem(type: string, v: unknown): string | undefined {
  switch (type) {
    case "string":
    case "Date":
    case "V1MicroTime":
      return typeof v === "string" ? undefined : "string";
    case "Quantity":
      return isQuantity(v) ? undefined : "string";
    case "boolean":
      return typeof v === "boolean" ? undefined : "boolean";
    case "IntOrString":
      return typeof v === "string" || (typeof v === "number" && Number.isInteger(v))
        ? undefined
        : "int-or-string";
    case "number":
      return typeof v === "number" && Number.isFinite(v) ? undefined : "number";
    case "number:int32":
    case "number:int64":
      if (typeof v !== "number" || !Number.isInteger(v)) return "integer";
      return type === "number:int32" && (v > 2147483647 || v < -2147483648) ? "int32" : undefined;
    default:
      return undefined; // any, object
  }
}

function check(type: Parsed, v: unknown, path: FieldPath, causes: V1StatusCause[], secret: boolean): void {
  if (v === null || v === undefined) return;
  const bad = (expected: string): void => {
    causes.push(typeInvalid(path, v, `must be of type ${expected}`, secret));
  };
  if ("list" in type) {
    if (!Array.isArray(v)) return bad("array");
    v.forEach((item, i) => check(type.list, item, path.index(i), causes, secret));
  } else if ("map" in type) {
    if (!isObject(v)) return bad("object");
    for (const k of Object.keys(v)) check(type.map, v[k], path.key(k), causes, secret);
  } else if ("primitive" in type) {
    const problem = primitiveProblem(type.primitive, v);
    if (problem) bad(problem);
  } else {
    if (!isObject(v)) return bad("object");
    type.model ??= modelFields(type.name);
    // Only the fields present: unknown ones pass, as Kubernetes' decoder drops them.
    for (const k of Object.keys(v)) {
      const ft = type.model.get(k);
      if (ft) check(ft, v[k], path.child(k), causes, secret);
    }
  }
}

/** Every field whose JSON type differs from the kind's schema (metadata is checked on its own). */
export function validateTypes(kind: string, o: Record<string, unknown>, root: FieldPath): V1StatusCause[] {
  const model = KIND_MODELS[kind];
  const causes: V1StatusCause[] = [];
  if (!model) return causes;
  const fields = modelFields(model);
  for (const k of Object.keys(o)) {
    const t = fields.get(k);
    if (k === "metadata" || !t) continue;
    check(t, o[k], root.child(k), causes, kind === "Secret" && (k === "data" || k === "stringData"));
  }
  return causes;
}
