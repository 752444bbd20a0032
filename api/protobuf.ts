/**
 * Decoding of the Kubernetes protobuf envelope for the object kinds kubectl's typed clients send
 * (`kubectl create namespace|configmap|secret|serviceaccount|service|deployment|job|cronjob` post
 * protobuf, with no JSON fallback; `kubectl create job --from=cronjob/x` sends the CronJob's whole
 * defaulted pod template). Only the fields those commands produce are mapped; an unknown field in
 * a message is skipped. Field numbers follow k8s.io/api's generated.proto.
 */
import { timestamp } from "../lib/time.ts";
import type { Kind, Schema } from "./protobuf-fields.ts";
import { API_VERSIONS as FIELD_API_VERSIONS, KEEP_ZERO, KINDS as FIELD_KINDS } from "./protobuf-fields.ts";
import { RBAC_API_VERSIONS, RBAC_KINDS } from "./protobuf-rbac.ts";

const KINDS: Record<string, Schema> = { ...FIELD_KINDS, ...RBAC_KINDS };
const API_VERSIONS: Record<string, string> = { ...FIELD_API_VERSIONS, ...RBAC_API_VERSIONS };

export class ProtobufError extends Error {}

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}
  done(): boolean {
    return this.pos >= this.buf.length;
  }
  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.buf.length) throw new ProtobufError("truncated varint");
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 70n) throw new ProtobufError("varint too long");
    }
  }
  bytes(): Buffer {
    const len = Number(this.varint());
    if (this.pos + len > this.buf.length) throw new ProtobufError("truncated field");
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.pos += 4;
    else throw new ProtobufError(`unsupported wire type ${wire}`);
  }
}

function toSigned(v: bigint): number {
  return Number(BigInt.asIntN(64, v));
}

function decodeScalar(kind: Kind, r: Reader, wire: number): unknown {
  if (typeof kind === "object") return decodeMessage(r.bytes(), kind);
  switch (kind) {
    case "string":
      return r.bytes().toString("utf8");
    case "bytes":
      return r.bytes().toString("base64");
    case "int":
      return toSigned(r.varint());
    case "bool":
      return r.varint() !== 0n;
    case "time": {
      const t = decodeMessage(r.bytes(), { 1: ["seconds", "int"], 2: ["nanos", "int"] }) as {
        seconds?: number;
      };
      if (!t.seconds) return undefined;
      return timestamp((t.seconds ?? 0) * 1000);
    }
    case "quantity":
      return (decodeMessage(r.bytes(), { 1: ["string", "string"] }) as { string?: string }).string ?? "0";
    case "intOrString": {
      const v = decodeMessage(r.bytes(), {
        1: ["type", "int"],
        2: ["intVal", "int"],
        3: ["strVal", "string"],
      }) as { type?: number; intVal?: number; strVal?: string };
      return v.type === 1 ? (v.strVal ?? "") : (v.intVal ?? 0);
    }
  }
  void wire;
  return undefined;
}

function decodeMessage(buf: Buffer, schema: Schema): Record<string, unknown> {
  const r = new Reader(buf);
  const out: Record<string, unknown> = {};
  while (!r.done()) {
    const tag = Number(r.varint());
    const num = tag >>> 3;
    const wire = tag & 7;
    const field = schema[num];
    if (!field) {
      r.skip(wire);
      continue;
    }
    const [name, kind, shape] = field;
    if (shape === "inline" && typeof kind === "object") {
      Object.assign(out, decodeMessage(r.bytes(), kind));
      continue;
    }
    if (shape === "map" || shape === "mapBytes" || shape === "mapMsg") {
      const entry = decodeMessage(r.bytes(), { 1: ["k", "string"], 2: ["v", kind] });
      const map = ((out[name] as Record<string, unknown> | undefined) ??= {});
      map[String(entry.k ?? "")] = entry.v ?? (kind === "string" ? "" : undefined);
      out[name] = map;
    } else if (shape === "repeated") {
      if (wire === 2 && (kind === "int" || kind === "bool")) {
        // packed
        const inner = new Reader(r.bytes());
        const list = ((out[name] as unknown[] | undefined) ??= []);
        while (!inner.done()) list.push(decodeScalar(kind, inner, 0));
      } else ((out[name] as unknown[] | undefined) ??= []).push(decodeScalar(kind, r, wire));
    } else {
      // Go writes non-pointer fields even when empty; JSON would have omitted them (omitempty).
      const v = decodeScalar(kind, r, wire);
      if (v === undefined || v === "" || v === false || (v === 0 && !KEEP_ZERO.has(name))) continue;
      out[name] = v;
    }
  }
  return out;
}

const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

/** Decodes a `application/vnd.kubernetes.protobuf` body into the JSON form of the object. */
export function decodeKubernetesProtobuf(body: Buffer): Record<string, unknown> {
  if (body.length < 4 || !body.subarray(0, 4).equals(MAGIC))
    throw new ProtobufError("not a Kubernetes protobuf message (missing k8s magic)");
  const unknown = decodeMessage(body.subarray(4), {
    1: ["typeMeta", { 1: ["apiVersion", "string"], 2: ["kind", "string"] }],
    2: ["raw", "bytes"],
  }) as { typeMeta?: { apiVersion?: string; kind?: string }; raw?: string };
  const kind = unknown.typeMeta?.kind ?? "";
  const schema = KINDS[kind];
  if (!schema)
    throw new ProtobufError(
      `protobuf bodies are accepted only for ${Object.keys(KINDS).join(", ")}; send ${kind || "this object"} as JSON or YAML`,
    );
  const obj = decodeMessage(Buffer.from(unknown.raw ?? "", "base64"), schema);
  return { apiVersion: unknown.typeMeta?.apiVersion || API_VERSIONS[kind] || "v1", kind, ...obj };
}
