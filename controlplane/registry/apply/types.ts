/**
 * The shape server-side apply sees in a schema (structured-merge-diff's atoms): a struct merges
 * field by field, a map key by key, a list by its x-kubernetes-list-type (map: items by their
 * x-kubernetes-list-map-keys; set: scalar items by value; atomic: replaced whole), everything
 * else is a scalar. A value with no schema (an unknown field, RawExtension, preserve-unknown) is
 * "untyped": objects merge key by key and lists are atomic, as upstream deduces.
 */
import { deref, type Schema } from "../../openapi/definitions.ts";

export type Shape =
  | { kind: "struct"; atomic: boolean; field: (name: string) => Shape }
  | { kind: "map"; atomic: boolean; elem: () => Shape }
  | { kind: "list"; listType: "atomic" | "set" | "map"; keys: string[]; elem: () => Shape }
  | { kind: "scalar" }
  | { kind: "untyped" };

const SCALAR: Shape = { kind: "scalar" };
export const UNTYPED: Shape = { kind: "untyped" };

const shapes = new WeakMap<Schema, Shape>();

export function shapeOf(schema: Schema | undefined): Shape {
  if (!schema) return UNTYPED;
  const s = deref(schema);
  const hit = shapes.get(s);
  if (hit) return hit;
  let out: Shape;
  const props = s.properties as Record<string, Schema> | undefined;
  const extra = s.additionalProperties as Schema | boolean | undefined;
  if (s.type === "array") {
    const lt = s["x-kubernetes-list-type"];
    const keys = (s["x-kubernetes-list-map-keys"] as string[] | undefined) ?? [];
    const items = s.items as Schema | undefined;
    out = {
      kind: "list",
      listType: lt === "map" && keys.length ? "map" : lt === "set" ? "set" : "atomic",
      keys,
      elem: () => shapeOf(items),
    };
  } else if (props) {
    const atomic = s["x-kubernetes-map-type"] === "atomic";
    out = { kind: "struct", atomic, field: (name) => (props[name] ? shapeOf(props[name]) : UNTYPED) };
  } else if (typeof extra === "object") {
    out = { kind: "map", atomic: s["x-kubernetes-map-type"] === "atomic", elem: () => shapeOf(extra) };
  } else if (s.type === "object" && s.format === undefined) out = UNTYPED;
  else out = SCALAR;
  shapes.set(s, out);
  return out;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
