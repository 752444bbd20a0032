/**
 * Field sets as managedFields' FieldsV1 writes them: a tree whose keys are path elements (`f:name`
 * a field, `k:{"name":"app"}` an item of a map-list, `v:"x"` an item of a set, `i:0` an index) and
 * whose nodes are members of the set or only on the way to one (FieldsV1 marks a member that also
 * has children with `.`).
 */
import { isPlainObject, type Shape } from "./types.ts";

export class FieldSet {
  member = false;
  readonly children = new Map<string, FieldSet>();

  child(key: string): FieldSet {
    let c = this.children.get(key);
    if (!c) {
      c = new FieldSet();
      this.children.set(key, c);
    }
    return c;
  }

  isEmpty(): boolean {
    if (this.member) return false;
    for (const c of this.children.values()) if (!c.isEmpty()) return false;
    return true;
  }

  clone(): FieldSet {
    const out = new FieldSet();
    out.member = this.member;
    for (const [k, c] of this.children) out.children.set(k, c.clone());
    return out;
  }

  union(other: FieldSet): FieldSet {
    const out = this.clone();
    const add = (into: FieldSet, from: FieldSet): void => {
      into.member ||= from.member;
      for (const [k, c] of from.children) add(into.child(k), c);
    };
    add(out, other);
    return out;
  }

  /** The members of this set that are not members of `other`. */
  difference(other: FieldSet): FieldSet {
    const out = new FieldSet();
    out.member = this.member && !other.member;
    for (const [k, c] of this.children) {
      const o = other.children.get(k);
      const d = o ? c.difference(o) : c.clone();
      if (!d.isEmpty()) out.children.set(k, d);
    }
    return out;
  }

  /** The members in both sets. */
  intersection(other: FieldSet): FieldSet {
    const out = new FieldSet();
    out.member = this.member && other.member;
    for (const [k, c] of this.children) {
      const o = other.children.get(k);
      if (!o) continue;
      const i = c.intersection(o);
      if (!i.isEmpty()) out.children.set(k, i);
    }
    return out;
  }

  /** Every member as a path of elements. */
  paths(prefix: string[] = []): string[][] {
    const out: string[][] = [];
    if (this.member) out.push(prefix);
    for (const [k, c] of [...this.children].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      out.push(...c.paths([...prefix, k]));
    return out;
  }

  toFieldsV1(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    if (this.member && this.children.size > 0) out["."] = {};
    for (const [k, c] of [...this.children].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      if (!c.isEmpty()) out[k] = c.toFieldsV1();
    return out;
  }

  static fromFieldsV1(v: unknown): FieldSet {
    const out = new FieldSet();
    if (!isPlainObject(v)) return out;
    const keys = Object.keys(v);
    if (keys.length === 0) out.member = true;
    for (const k of keys) {
      if (k === ".") out.member = true;
      else out.children.set(k, FieldSet.fromFieldsV1(v[k]));
    }
    return out;
  }
}

/** A path as upstream prints it in a conflict: `.spec.containers[name="app"].image`. */
export function renderPath(path: string[]): string {
  let out = "";
  for (const el of path) {
    const body = el.slice(2);
    if (el.startsWith("f:")) out += `.${body}`;
    else if (el.startsWith("k:")) {
      let parts: string[];
      try {
        parts = Object.entries(JSON.parse(body) as Record<string, unknown>).map(
          ([k, v]) => `${k}=${JSON.stringify(v)}`,
        );
      } catch {
        parts = [body];
      }
      out += `[${parts.join(",")}]`;
    } else if (el.startsWith("v:")) out += `[=${body}]`;
    else out += `[${body}]`;
  }
  return out;
}

/** Key fields' defaults, so `{containerPort: 80}` and the stored `{containerPort: 80, protocol: TCP}` match. */
const KEY_DEFAULTS: Record<string, unknown> = { protocol: "TCP" };

function sortedJson(o: Record<string, unknown>): string {
  return JSON.stringify(
    Object.fromEntries(
      Object.keys(o)
        .sort()
        .map((k) => [k, o[k]]),
    ),
  );
}

/** The path element of a list item, undefined for an atomic list or an item that has no key. */
export function itemKey(item: unknown, shape: Shape & { kind: "list" }): string | undefined {
  if (shape.listType === "set") return `v:${JSON.stringify(item)}`;
  if (shape.listType !== "map" || !isPlainObject(item)) return undefined;
  const key: Record<string, unknown> = {};
  for (const k of shape.keys) {
    const v = item[k] ?? KEY_DEFAULTS[k];
    if (v !== undefined) key[k] = v;
  }
  return Object.keys(key).length ? `k:${sortedJson(key)}` : undefined;
}

function childShape(shape: Shape, key: string): Shape {
  if (shape.kind === "struct") return shape.field(key);
  if (shape.kind === "map") return shape.elem();
  return { kind: "untyped" };
}

function granularObject(shape: Shape): boolean {
  return (shape.kind === "struct" || shape.kind === "map") && !shape.atomic;
}

/**
 * The fields a value sets (structured-merge-diff's ToFieldSet): scalars, atomic lists and maps,
 * empty objects and list items are members.
 */
export function fieldsOf(value: unknown, shape: Shape): FieldSet {
  const node = new FieldSet();
  collect(value, shape, node);
  return node;
}

function collect(v: unknown, shape: Shape, node: FieldSet): void {
  if (isPlainObject(v) && (granularObject(shape) || shape.kind === "untyped")) {
    const keys = Object.keys(v);
    if (keys.length === 0) node.member = true;
    for (const k of keys) collect(v[k], childShape(shape, k), node.child(`f:${k}`));
    return;
  }
  if (Array.isArray(v) && shape.kind === "list" && shape.listType !== "atomic") {
    if (v.length === 0) node.member = true;
    for (const item of v) {
      const key = itemKey(item, shape);
      if (key === undefined) {
        node.member = true;
        continue;
      }
      const c = node.child(key);
      c.member = true;
      if (shape.listType === "map") collect(item, shape.elem(), c);
    }
    return;
  }
  node.member = true;
}

/**
 * What an update changed (structured-merge-diff's Compare, added and modified): the leaves whose
 * value differs from `old`, new list items and new maps (FieldsV1's `.`).
 */
export function changedFields(old: unknown, next: unknown, shape: Shape): FieldSet {
  const node = new FieldSet();
  changed(old, next, shape, node);
  return node;
}

function changed(old: unknown, v: unknown, shape: Shape, node: FieldSet): void {
  if (isPlainObject(v) && (granularObject(shape) || shape.kind === "untyped")) {
    const before = isPlainObject(old) ? old : undefined;
    const keys = Object.keys(v);
    if (keys.length === 0) {
      if (!before || Object.keys(before).length > 0) node.member = true;
      return;
    }
    if (!before && shape.kind === "map") node.member = true;
    for (const k of keys) changed(before?.[k], v[k], childShape(shape, k), node.child(`f:${k}`));
    return;
  }
  if (Array.isArray(v) && shape.kind === "list" && shape.listType !== "atomic") {
    const before = Array.isArray(old) ? old : [];
    const index = new Map<string, unknown>();
    for (const item of before) {
      const key = itemKey(item, shape);
      if (key !== undefined) index.set(key, item);
    }
    if (v.length === 0 && (!Array.isArray(old) || old.length > 0)) node.member = true;
    for (const item of v) {
      const key = itemKey(item, shape);
      if (key === undefined) {
        if (!sameJson(old, v)) node.member = true;
        continue;
      }
      const c = node.child(key);
      if (!index.has(key)) c.member = true;
      if (shape.listType === "map") changed(index.get(key), item, shape.elem(), c);
    }
    return;
  }
  if (!sameJson(old, v)) node.member = true;
}

function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== "object") return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => sameJson(x, b[i]));
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const bo = b as Record<string, unknown>;
  if (ka.length !== Object.keys(bo).length) return false;
  return ka.every(
    (k) => Object.prototype.hasOwnProperty.call(bo, k) && sameJson((a as Record<string, unknown>)[k], bo[k]),
  );
}

/** The members of `set` whose path exists in `value` (walks the set, not the whole object). */
export function existingIn(set: FieldSet, value: unknown, shape: Shape): FieldSet {
  const out = new FieldSet();
  out.member = set.member;
  for (const [k, c] of set.children) {
    let child: unknown;
    let sub: Shape;
    if (k.startsWith("f:")) {
      if (!isPlainObject(value) || !Object.prototype.hasOwnProperty.call(value, k.slice(2))) continue;
      child = value[k.slice(2)];
      sub = childShape(shape, k.slice(2));
    } else if (Array.isArray(value) && shape.kind === "list") {
      child = value.find((item) => itemKey(item, shape) === k);
      if (child === undefined) continue;
      sub = shape.elem();
    } else continue;
    const kept = existingIn(c, child, sub);
    if (!kept.isEmpty()) out.children.set(k, kept);
  }
  return out;
}

/** Removes the members of `set` from `obj` in place (a member list item goes whole). */
export function removeFields(obj: unknown, set: FieldSet, shape: Shape): void {
  if (isPlainObject(obj)) {
    for (const [k, c] of set.children) {
      if (!k.startsWith("f:")) continue;
      const name = k.slice(2);
      if (!Object.prototype.hasOwnProperty.call(obj, name)) continue;
      if (c.member && c.children.size === 0) delete obj[name];
      else {
        removeFields(obj[name], c, childShape(shape, name));
        if (c.member && isPlainObject(obj[name]) && Object.keys(obj[name]).length === 0) delete obj[name];
      }
    }
    return;
  }
  if (Array.isArray(obj) && shape.kind === "list") {
    for (const [k, c] of set.children) {
      const i = obj.findIndex((item) => itemKey(item, shape) === k);
      if (i < 0) continue;
      if (c.member) obj.splice(i, 1);
      else if (shape.listType === "map") removeFields(obj[i], c, shape.elem());
    }
  }
}

/** Merges an applied configuration into the live value, as structured-merge-diff does. */
export function mergeApplied(live: unknown, config: unknown, shape: Shape): unknown {
  if (config === null) return undefined;
  if (isPlainObject(config) && (granularObject(shape) || shape.kind === "untyped")) {
    const out: Record<string, unknown> = isPlainObject(live) ? { ...live } : {};
    for (const [k, v] of Object.entries(config)) {
      const merged = mergeApplied(out[k], v, childShape(shape, k));
      if (merged === undefined) delete out[k];
      else out[k] = merged;
    }
    return out;
  }
  if (Array.isArray(config) && shape.kind === "list" && shape.listType !== "atomic") {
    const out = Array.isArray(live) ? [...live] : [];
    for (const item of config) {
      const key = itemKey(item, shape);
      const i = key === undefined ? -1 : out.findIndex((o) => itemKey(o, shape) === key);
      if (i < 0) out.push(structuredClone(item));
      else if (shape.listType === "map") out[i] = mergeApplied(out[i], item, shape.elem());
    }
    return out;
  }
  return structuredClone(config);
}
