import { isIP } from "node:net";
import { stableStringify } from "../../lib/stable-json.ts";
import type { V1StatusCause } from "@kubernetes/client-node";
import { base64DecodedLength, base64ErrorAt } from "./base64.ts";
import {
  duplicate,
  FieldPath,
  forbidden,
  immutable,
  invalidValue,
  notSupported,
  REDACTED,
  required,
  tooLong,
} from "./field.ts";
import { isConfigMapKey, isDns1123Label, isDns1123Subdomain } from "./names.ts";

/** Per-kind rules of the core group (pkg/apis/core/validation), run once the field types are right. */

type Obj = Record<string, unknown>;
const ROOT = FieldPath.root();

/** A ConfigMap's or Secret's data may hold at most 1 MiB. */
export const MAX_SECRET_SIZE = 1024 * 1024;

export function obj(v: unknown): Obj | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
}

function validateContainers(list: unknown, path: FieldPath, causes: V1StatusCause[], needed: boolean): void {
  if (list === undefined || list === null) {
    if (needed) causes.push(required(path));
    return;
  }
  if (!Array.isArray(list)) return;
  if (needed && list.length === 0) causes.push(required(path));
  const seen = new Set<string>();
  list.forEach((raw, i) => {
    const c = obj(raw);
    const p = path.index(i);
    if (!c) return;
    if (typeof c.name !== "string" || c.name === "") causes.push(required(p.child("name")));
    else {
      for (const m of isDns1123Label(c.name)) causes.push(invalidValue(p.child("name"), c.name, m));
      if (seen.has(c.name)) causes.push(duplicate(p.child("name"), c.name));
      seen.add(c.name);
    }
    if (typeof c.image !== "string" || c.image.trim() === "") causes.push(required(p.child("image")));
    (Array.isArray(c.ports) ? c.ports : []).forEach((rp, j) => {
      const n = obj(rp)?.containerPort;
      if (typeof n !== "number" || n < 1 || n > 65535)
        causes.push(
          invalidValue(
            p.child("ports").index(j).child("containerPort"),
            n,
            "must be between 1 and 65535, inclusive",
          ),
        );
    });
  });
}

export function validatePodSpec(spec: unknown, path: FieldPath, causes: V1StatusCause[]): void {
  const s = obj(spec);
  if (!s) {
    causes.push(required(path));
    return;
  }
  validateContainers(s.containers, path.child("containers"), causes, true);
  validateContainers(s.initContainers, path.child("initContainers"), causes, false);
  const rp = s.restartPolicy;
  if (rp !== undefined && !["Always", "OnFailure", "Never"].includes(String(rp)))
    causes.push(notSupported(path.child("restartPolicy"), rp, ["Always", "OnFailure", "Never"]));
  if (typeof s.nodeName === "string" && s.nodeName !== "")
    for (const m of isDns1123Subdomain(s.nodeName))
      causes.push(invalidValue(path.child("nodeName"), s.nodeName, m));
}

function validateService(o: Obj, causes: V1StatusCause[]): void {
  const spec = obj(o.spec);
  const type = spec?.type;
  const types = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
  if (type !== undefined && !types.includes(String(type)))
    causes.push(notSupported("spec.type", type, types));
  const ports = Array.isArray(spec?.ports) ? (spec.ports as unknown[]) : undefined;
  if (type !== "ExternalName" && spec?.clusterIP !== "None" && !ports?.length)
    causes.push(required("spec.ports"));
  (ports ?? []).forEach((rp, i) => {
    const port = obj(rp);
    const n = port?.port;
    if (typeof n !== "number" || n < 1 || n > 65535)
      causes.push(invalidValue(`spec.ports[${i}].port`, n, "must be between 1 and 65535, inclusive"));
    if (ports!.length > 1 && !port?.name) causes.push(required(`spec.ports[${i}].name`));
  });
}

/** Keys of data/binaryData; returns the total size in bytes. */
function validateDataKeys(
  o: Obj,
  fields: string[],
  causes: V1StatusCause[],
  decoded: (field: string, key: string, value: string) => number | undefined,
): number {
  let size = 0;
  const seen = new Set<string>();
  for (const field of fields) {
    for (const [k, v] of Object.entries(obj(o[field]) ?? {})) {
      const p = ROOT.child(field).key(k);
      for (const m of isConfigMapKey(k)) causes.push(invalidValue(p, k, m));
      if (seen.has(k)) causes.push(invalidValue(p, k, "duplicate of key present in data"));
      seen.add(k);
      if (typeof v === "string") size += decoded(field, k, v) ?? 0;
    }
  }
  return size;
}

function base64Value(
  path: FieldPath,
  v: string,
  causes: V1StatusCause[],
  secret: boolean,
): number | undefined {
  const at = base64ErrorAt(v);
  if (at === undefined) return base64DecodedLength(v);
  causes.push(invalidValue(path, secret ? REDACTED : v, `illegal base64 data at input byte ${at}`));
  return undefined;
}

function validateConfigMap(o: Obj, causes: V1StatusCause[]): void {
  const size = validateDataKeys(o, ["data", "binaryData"], causes, (field, k, v) =>
    field === "data" ? Buffer.byteLength(v) : base64Value(ROOT.child(field).key(k), v, causes, false),
  );
  if (size > MAX_SECRET_SIZE) causes.push(tooLong(ROOT, MAX_SECRET_SIZE));
}

const SECRET_KEYS: Record<string, string[]> = {
  "kubernetes.io/tls": ["tls.crt", "tls.key"],
  "kubernetes.io/dockerconfigjson": [".dockerconfigjson"],
  "kubernetes.io/dockercfg": [".dockercfg"],
  "kubernetes.io/ssh-auth": ["ssh-privatekey"],
};

function validateSecret(o: Obj, causes: V1StatusCause[]): void {
  const size = validateDataKeys(o, ["data"], causes, (_field, k, v) =>
    base64Value(ROOT.child("data").key(k), v, causes, true),
  );
  if (size > MAX_SECRET_SIZE) causes.push(tooLong("data", MAX_SECRET_SIZE));
  const data = obj(o.data) ?? {};
  for (const k of SECRET_KEYS[String(o.type)] ?? [])
    if (data[k] === undefined) causes.push(required(ROOT.child("data").key(k)));
}

const PROTOCOLS = ["SCTP", "TCP", "UDP"];

/** Endpoints: every address an IP (proxies program them), ports in range, named when several. */
function validateEndpoints(o: Obj, causes: V1StatusCause[]): void {
  const subsets = Array.isArray(o.subsets) ? o.subsets : [];
  subsets.forEach((raw, i) => {
    const subset = obj(raw) ?? {};
    const p = ROOT.child("subsets").index(i);
    for (const list of ["addresses", "notReadyAddresses"]) {
      (Array.isArray(subset[list]) ? (subset[list] as unknown[]) : []).forEach((a, j) => {
        const address = obj(a) ?? {};
        const ap = p.child(list).index(j);
        if (typeof address.ip !== "string" || address.ip === "") causes.push(required(ap.child("ip")));
        else if (!isIP(address.ip))
          causes.push(
            invalidValue(
              ap.child("ip"),
              address.ip,
              "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ),
          );
        if (typeof address.nodeName === "string")
          for (const m of isDns1123Subdomain(address.nodeName))
            causes.push(invalidValue(ap.child("nodeName"), address.nodeName, m));
      });
    }
    const ports = Array.isArray(subset.ports) ? subset.ports : [];
    ports.forEach((raw, j) => {
      const port = obj(raw) ?? {};
      const pp = p.child("ports").index(j);
      if (ports.length > 1 && !port.name) causes.push(required(pp.child("name")));
      if (typeof port.port !== "number" || port.port < 1 || port.port > 65535)
        causes.push(invalidValue(pp.child("port"), port.port, "must be between 1 and 65535, inclusive"));
      if (port.protocol !== undefined && !PROTOCOLS.includes(String(port.protocol)))
        causes.push(notSupported(pp.child("protocol"), port.protocol, PROTOCOLS));
    });
  });
}

/** Rules for a new object of a core kind (also run on every update). */
export function validateCore(kind: string, o: Obj, causes: V1StatusCause[]): void {
  switch (kind) {
    case "Pod":
      validatePodSpec(o.spec, ROOT.child("spec"), causes);
      break;
    case "Service":
      validateService(o, causes);
      break;
    case "ConfigMap":
      validateConfigMap(o, causes);
      break;
    case "Secret":
      validateSecret(o, causes);
      break;
    case "Endpoints":
      validateEndpoints(o, causes);
      break;
  }
}

/** `immutable: true` ConfigMaps and Secrets keep their data, and stay immutable. */
function validateImmutableData(kind: string, next: Obj, old: Obj, causes: V1StatusCause[]): void {
  if (old.immutable !== true) return;
  const msg = "field is immutable when `immutable` is set";
  if (next.immutable !== true) causes.push(forbidden("immutable", msg));
  const fields = kind === "Secret" ? ["data"] : ["data", "binaryData"];
  for (const f of fields)
    if (stableStringify(next[f] ?? {}) !== stableStringify(old[f] ?? {})) causes.push(forbidden(f, msg));
}

/** Rules that compare an update with the stored object. */
export function validateCoreUpdate(kind: string, next: Obj, old: Obj, causes: V1StatusCause[]): void {
  switch (kind) {
    case "ConfigMap":
      validateImmutableData(kind, next, old, causes);
      break;
    case "Secret":
      causes.push(...immutable("type", next.type, old.type));
      validateImmutableData(kind, next, old, causes);
      break;
  }
}
