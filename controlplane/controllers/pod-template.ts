/**
 * Pod templates as the Deployment controller compares them. Kubernetes decodes objects into Go
 * structs, so a template that went through a client (kubectl `rollout undo` sends back a
 * ReplicaSet's template) comes back with `creationTimestamp: null`, `resources: {}`, quantities in
 * canonical form and empty strings, lists and maps left out. The server here stores JSON as sent,
 * so equality has to forgive exactly those differences, or a rollback would create a new
 * ReplicaSet instead of reviving the old one (deployment/util EqualIgnoreHash, Semantic.DeepEqual).
 */
import type { V1PodTemplateSpec } from "@kubernetes/client-node";
import { parseQuantity } from "../../lib/quantity.ts";

export const HASH_LABEL = "pod-template-hash";

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Maps (not structs): an entry with an empty value is data there, not an omitted field. */
const MAPS = new Set([
  "labels",
  "annotations",
  "nodeSelector",
  "matchLabels",
  "requests",
  "limits",
  "overhead",
  "volumeAttributes",
]);
/** Maps whose values are resource quantities: "1000m" and "1" are the same. */
const QUANTITY_MAPS = new Set(["requests", "limits", "overhead"]);
/** Non-pointer Go fields with omitempty: false and 0 there are the same as left out. */
const ZERO_OMITTED = new Set([
  "stdin",
  "stdinOnce",
  "tty",
  "hostNetwork",
  "hostPID",
  "hostIPC",
  "readOnly",
  "hostPort",
  "initialDelaySeconds",
  "timeoutSeconds",
  "periodSeconds",
  "successThreshold",
  "failureThreshold",
]);

function quantity(v: Json): Json {
  const q = typeof v === "string" || typeof v === "number" ? parseQuantity(v) : undefined;
  return q === undefined ? v : `quantity:${Number(q.toPrecision(15))}`;
}

const isObject = (v: Json | undefined): v is { [k: string]: Json } =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * `v` with the differences a Go round trip makes removed; undefined means "left out".
 * `keepEmptyChildren` keeps `{}` values (a volume's `emptyDir: {}` is its whole meaning).
 */
function semantic(v: Json | undefined, key = "", keepEmptyChildren = false): Json | undefined {
  if (v === null || v === undefined || v === "") return undefined;
  if (ZERO_OMITTED.has(key) && (v === false || v === 0)) return undefined;
  if (Array.isArray(v)) {
    // List items are kept in place (args may hold ""); only objects inside are normalized.
    const items = v.map((x) => (isObject(x) ? (semantic(x, "", key === "volumes") ?? {}) : x));
    return items.length ? items : undefined;
  }
  if (!isObject(v)) return v;
  const out: { [k: string]: Json } = {};
  for (const k of Object.keys(v).sort()) {
    const child = v[k];
    let x: Json | undefined;
    if (QUANTITY_MAPS.has(key)) x = quantity(child ?? null);
    else if (MAPS.has(key)) x = child ?? "";
    else x = semantic(child, k);
    if (x === undefined && keepEmptyChildren && isObject(child)) x = {};
    if (x !== undefined) out[k] = x;
  }
  return Object.keys(out).length ? out : undefined;
}

/** The template as compared and hashed: semantic form, without the pod-template-hash label. */
export function templateIdentity(t: V1PodTemplateSpec | undefined): string {
  const copy = structuredClone(t ?? {}) as V1PodTemplateSpec;
  if (copy.metadata?.labels) delete copy.metadata.labels[HASH_LABEL];
  return JSON.stringify(semantic(copy as unknown as Json) ?? {});
}

/** Whether two templates are the same pod, ignoring the hash label (EqualIgnoreHash). */
export function templatesEqualIgnoringHash(
  a: V1PodTemplateSpec | undefined,
  b: V1PodTemplateSpec | undefined,
): boolean {
  return templateIdentity(a) === templateIdentity(b);
}

/** Kubernetes' vowel-free alphabet for generated name parts (rand.SafeEncodeString). */
const ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789";

/**
 * FNV-1a (32 bit) over the template's identity and the Deployment's collisionCount, encoded like
 * Kubernetes' ComputeHash (e.g. "5d8f7c9b6"). Only names a new ReplicaSet: which ReplicaSet is
 * the Deployment's is decided by comparing templates, so a collision costs a retry, not a mix-up.
 */
export function podTemplateHash(t: V1PodTemplateSpec | undefined, collisionCount?: number): string {
  let h = 0x811c9dc5;
  const feed = (bytes: Uint8Array): void => {
    for (const b of bytes) {
      h ^= b;
      h = Math.imul(h, 0x01000193) >>> 0;
    }
  };
  feed(Buffer.from(templateIdentity(t)));
  if (collisionCount) {
    const n = Buffer.alloc(4);
    n.writeUInt32LE(collisionCount >>> 0);
    feed(n);
  }
  let out = "";
  for (const ch of String(h)) out += ALPHANUMS[ch.charCodeAt(0) % ALPHANUMS.length];
  return out;
}
