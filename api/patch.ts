/** The three patch types Kubernetes accepts: JSON merge patch, JSON patch and strategic merge patch. */

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

/** A patch that cannot apply: 422, or 413 when it is too big (too many operations, too large a result). */
export class PatchError extends Error {
  constructor(
    message: string,
    readonly code: 413 | 422 = 422,
  ) {
    super(message);
  }
}

/** kube-apiserver's limit (maxJSONPatchOperations). */
export const MAX_JSON_PATCH_OPERATIONS = 10_000;

/** Keys a patch may never walk into or create: they reach an object's prototype, not its data. */
const FORBIDDEN_KEYS = new Set(["__proto__", "constructor", "prototype"]);

const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

function jsonSize(v: unknown): number {
  return v === undefined ? 0 : Buffer.byteLength(JSON.stringify(v) ?? "");
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

/** RFC 7386: objects merge recursively, null deletes, everything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return clone(patch);
  const out: JsonObject = isObject(target) ? clone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k === "__proto__") continue;
    if (v === null) delete out[k];
    else out[k] = mergePatch(hasOwn(out, k) ? out[k] : undefined, v) as Json;
  }
  return out;
}

function unescapePointer(seg: string): string {
  return seg.replace(/~1/g, "/").replace(/~0/g, "~");
}

function parsePointer(path: string): string[] {
  if (path === "") return [];
  if (!path.startsWith("/")) throw new PatchError(`invalid JSON pointer "${path}"`);
  const segs = path.slice(1).split("/").map(unescapePointer);
  const bad = segs.find((s) => FORBIDDEN_KEYS.has(s));
  if (bad !== undefined)
    throw new PatchError(`the JSON pointer "${path}" may not contain the segment "${bad}"`);
  return segs;
}

function getAt(doc: Json, segs: string[], path: string): Json {
  let cur: Json = doc;
  for (const s of segs) {
    if (Array.isArray(cur)) {
      const i = Number(s);
      if (!Number.isInteger(i) || i < 0 || i >= cur.length) throw new PatchError(`path "${path}" not found`);
      cur = cur[i]!;
    } else if (isObject(cur) && hasOwn(cur, s)) cur = cur[s]!;
    else throw new PatchError(`path "${path}" not found`);
  }
  return cur;
}

interface JsonPatchOp {
  op: string;
  path: string;
  from?: string;
  value?: Json;
}

/**
 * RFC 6902 JSON patch (add, remove, replace, move, copy, test). At most MAX_JSON_PATCH_OPERATIONS
 * operations, and the result may not grow past maxBytes (`copy` doubles a value with every operation).
 */
export function jsonPatch(target: unknown, ops: unknown, maxBytes = Infinity): unknown {
  if (!Array.isArray(ops)) throw new PatchError("a JSON patch must be an array of operations");
  if (ops.length > MAX_JSON_PATCH_OPERATIONS) {
    throw new PatchError(
      `The allowed maximum operations in a JSON patch is ${MAX_JSON_PATCH_OPERATIONS}, got ${ops.length}`,
      413,
    );
  }
  let doc = clone(target) as Json;
  // An estimate of the result's JSON size, kept as values come and go (keys and separators aside).
  let size = maxBytes === Infinity ? 0 : jsonSize(doc);
  const grow = (delta: number): void => {
    if (maxBytes === Infinity) return;
    size += delta;
    if (size > maxBytes)
      throw new PatchError(`the patched object would be larger than ${maxBytes} bytes`, 413);
  };
  const measure = (v: Json): number => (maxBytes === Infinity ? 0 : jsonSize(v));
  const setAt = (segs: string[], value: Json, mode: "add" | "replace", path: string): void => {
    if (segs.length === 0) {
      grow(measure(value) - measure(doc));
      doc = value;
      return;
    }
    const parent = getAt(doc, segs.slice(0, -1), path);
    const last = segs[segs.length - 1]!;
    if (Array.isArray(parent)) {
      const i = last === "-" ? parent.length : Number(last);
      if (!Number.isInteger(i) || i < 0 || i > parent.length)
        throw new PatchError(`path "${path}" out of range`);
      if (mode === "add") {
        grow(measure(value));
        parent.splice(i, 0, value);
      } else {
        if (i >= parent.length) throw new PatchError(`path "${path}" not found`);
        grow(measure(value) - measure(parent[i]!));
        parent[i] = value;
      }
    } else if (isObject(parent)) {
      const had = hasOwn(parent, last);
      if (mode === "replace" && !had) throw new PatchError(`path "${path}" not found`);
      grow(measure(value) - (had ? measure(parent[last]!) : -last.length));
      parent[last] = value;
    } else throw new PatchError(`path "${path}" has no parent object`);
  };
  const removeAt = (segs: string[], path: string): Json => {
    const parent = getAt(doc, segs.slice(0, -1), path);
    const last = segs[segs.length - 1]!;
    if (Array.isArray(parent)) {
      const i = Number(last);
      if (!Number.isInteger(i) || i < 0 || i >= parent.length)
        throw new PatchError(`path "${path}" not found`);
      const v = parent.splice(i, 1)[0]!;
      grow(-measure(v));
      return v;
    }
    if (isObject(parent) && hasOwn(parent, last)) {
      const v = parent[last]!;
      delete parent[last];
      grow(-measure(v));
      return v;
    }
    throw new PatchError(`path "${path}" not found`);
  };
  for (const raw of ops as JsonPatchOp[]) {
    if (!isObject(raw) || typeof raw.op !== "string" || typeof raw.path !== "string") {
      throw new PatchError("each JSON patch operation needs op and path");
    }
    if ((raw.op === "move" || raw.op === "copy") && typeof raw.from !== "string")
      throw new PatchError(`the ${raw.op} operation at "${raw.path}" needs a "from" string`);
    const segs = parsePointer(raw.path);
    switch (raw.op) {
      case "add":
        setAt(segs, clone(raw.value ?? null), "add", raw.path);
        break;
      case "replace":
        setAt(segs, clone(raw.value ?? null), "replace", raw.path);
        break;
      case "remove":
        removeAt(segs, raw.path);
        break;
      case "move": {
        const v = removeAt(parsePointer(raw.from ?? ""), raw.from ?? "");
        setAt(segs, v, "add", raw.path);
        break;
      }
      case "copy":
        setAt(segs, clone(getAt(doc, parsePointer(raw.from ?? ""), raw.from ?? "")), "add", raw.path);
        break;
      case "test":
        if (JSON.stringify(getAt(doc, segs, raw.path)) !== JSON.stringify(raw.value)) {
          throw new PatchError(`test operation failed at "${raw.path}"`);
        }
        break;
      default:
        throw new PatchError(`unknown JSON patch operation "${raw.op}"`);
    }
  }
  return doc;
}

/**
 * Merge keys of the list fields in the served kinds (patchMergeKey in the Kubernetes types).
 * Lists not named here are replaced as a whole, like Kubernetes' atomic lists.
 */
const MERGE_KEYS: Record<string, string> = {
  containers: "name",
  initContainers: "name",
  ephemeralContainers: "name",
  env: "name",
  volumes: "name",
  volumeMounts: "mountPath",
  volumeDevices: "devicePath",
  imagePullSecrets: "name",
  conditions: "type",
  ownerReferences: "uid",
  hostAliases: "ip",
  addresses: "type",
  taints: "key",
  secrets: "name",
  topologySpreadConstraints: "topologyKey",
};

/** Lists of scalars merged as sets (patchStrategy merge on []string). */
const SET_LISTS = new Set(["finalizers"]);

function mergeKeyFor(field: string, items: Json[]): string | undefined {
  if (field === "ports") {
    // Container ports merge on containerPort, Service ports on port.
    return items.some((i) => isObject(i) && "containerPort" in i) ? "containerPort" : "port";
  }
  return hasOwn(MERGE_KEYS, field) ? MERGE_KEYS[field] : undefined;
}

function sameKey(a: Json, b: Json, key: string): boolean {
  return (
    isObject(a) && isObject(b) && a[key] !== undefined && JSON.stringify(a[key]) === JSON.stringify(b[key])
  );
}

function mergeList(field: string, original: Json[], patch: Json[], orderHint: Json[] | undefined): Json[] {
  if (SET_LISTS.has(field)) {
    const out = [...original];
    for (const p of patch) if (!out.some((o) => JSON.stringify(o) === JSON.stringify(p))) out.push(p);
    return out;
  }
  const key = mergeKeyFor(field, [...original, ...patch]);
  if (!key || !patch.every(isObject)) return clone(patch);
  // `$patch: replace` as an element replaces the whole list with the other elements.
  if (patch.some((p) => isObject(p) && p.$patch === "replace")) {
    return patch.filter((p) => !(isObject(p) && p.$patch === "replace")).map(clone);
  }
  const out = original.map(clone);
  for (const p of patch as JsonObject[]) {
    const idx = out.findIndex((o) => sameKey(o, p, key));
    if (p.$patch === "delete") {
      if (idx >= 0) out.splice(idx, 1);
      continue;
    }
    if (idx >= 0) out[idx] = strategicMerge(out[idx], p) as Json;
    else out.push(strategicMerge(undefined, p) as Json);
  }
  if (orderHint && orderHint.length > 0) {
    const rank = (o: Json): number => {
      const i = orderHint.findIndex((h) => sameKey(o, h, key));
      return i < 0 ? Number.MAX_SAFE_INTEGER : i;
    };
    out.sort((a, b) => rank(a) - rank(b));
  }
  return out;
}

/**
 * Strategic merge patch over plain JSON, as kubectl apply/edit/label send it: maps merge, null
 * deletes, lists with a merge key merge element-wise (`$patch: delete` removes one), other lists
 * replace; `$setElementOrder/`, `$retainKeys`, `$deleteFromPrimitiveList/` directives honoured.
 */
export function strategicMerge(original: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return clone(patch);
  if (patch.$patch === "replace") {
    const rest = clone(patch);
    delete rest.$patch;
    return rest;
  }
  if (patch.$patch === "delete") return undefined;
  let out: JsonObject = isObject(original) ? clone(original) : {};
  const retain = patch.$retainKeys;
  if (Array.isArray(retain)) {
    const keep = new Set(retain.filter((x): x is string => typeof x === "string"));
    out = Object.fromEntries(Object.entries(out).filter(([k]) => keep.has(k)));
  }
  for (const [k, v] of Object.entries(patch)) {
    if (k === "__proto__" || k === "$patch" || k === "$retainKeys" || k.startsWith("$setElementOrder/"))
      continue;
    if (k.startsWith("$deleteFromPrimitiveList/")) {
      const field = k.slice("$deleteFromPrimitiveList/".length);
      const cur = hasOwn(out, field) ? out[field] : undefined;
      if (field !== "__proto__" && Array.isArray(cur) && Array.isArray(v)) {
        out[field] = cur.filter((x) => !v.some((d) => JSON.stringify(d) === JSON.stringify(x)));
      }
      continue;
    }
    if (v === null) {
      delete out[k];
      continue;
    }
    const cur = hasOwn(out, k) ? out[k] : undefined;
    if (Array.isArray(v)) {
      const hint = patch[`$setElementOrder/${k}`];
      out[k] = mergeList(k, Array.isArray(cur) ? cur : [], v, Array.isArray(hint) ? hint : undefined);
    } else if (isObject(v)) {
      const merged = strategicMerge(cur, v);
      if (merged === undefined) delete out[k];
      else out[k] = merged as Json;
    } else out[k] = v;
  }
  // An order directive without a patch for that list still reorders it.
  for (const [k, v] of Object.entries(patch)) {
    if (!k.startsWith("$setElementOrder/")) continue;
    const field = k.slice("$setElementOrder/".length);
    const cur = hasOwn(out, field) ? out[field] : undefined;
    if (field !== "__proto__" && !hasOwn(patch, field) && Array.isArray(cur) && Array.isArray(v))
      out[field] = mergeList(field, cur, [], v);
  }
  return out;
}
