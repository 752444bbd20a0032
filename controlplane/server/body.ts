import type { IncomingMessage } from "node:http";
import { parse as parseYaml } from "yaml";
import { decodeKubernetesProtobuf } from "../../api/protobuf.ts";
import { groupVersion, type ResourceInfo } from "../../api/resources.ts";
import { ApiError, badRequest, invalid } from "../../api/status.ts";
import { validateObject } from "../../api/validation.ts";
import type { KObject } from "../registry.ts";

/**
 * etcd refuses requests over --max-request-bytes (1.5 MiB by default, as lab's etcd runs), and
 * such a refusal counts against the shared etcd client's member health. So a body, and any object
 * lab-server is about to store, stays below it with room for the key and the transaction.
 */
export const ETCD_MAX_REQUEST_BYTES = 1.5 * 1024 * 1024;
export const MAX_BODY_BYTES = ETCD_MAX_REQUEST_BYTES - 64 * 1024;
/**
 * kube-apiserver reads request bodies up to 3 MiB (MaxRequestBodyBytes), so an object too big for
 * etcd is refused by its kind's validation (422, e.g. a ConfigMap's 1 MiB) before the 413.
 */
export const MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024;
/** Bodies past the limit are drained (so the client reads the 413) up to this much, then cut. */
const MAX_DRAIN_BYTES = 64 * 1024 * 1024;
/**
 * Nesting depth of a request body. Go's JSON decoder stops at 10,000; lab-server's own recursive
 * code (patches, defaults, validation) is JavaScript, and no served kind nests past about 20.
 */
export const MAX_DEPTH = 100;

export function tooLarge(what = "request body", limit = MAX_BODY_BYTES): ApiError {
  return new ApiError(
    413,
    "RequestEntityTooLarge",
    limit === MAX_BODY_BYTES
      ? `Request entity too large: limit is ${limit} bytes (the ${what} must fit etcd's 1.5 MiB request limit)`
      : `Request entity too large: limit is ${limit} bytes`,
  );
}

/** Reads the body; past the limit it keeps draining (so the client gets the 413, not a reset). */
export function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > MAX_DRAIN_BYTES) {
      // Nothing to gain from reading that much: answer now, close the connection after.
      req.resume();
      reject(tooLarge("request body", MAX_REQUEST_BODY_BYTES));
      return;
    }
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_REQUEST_BODY_BYTES) chunks.push(chunk);
      else if (size > MAX_DRAIN_BYTES) {
        reject(tooLarge("request body", MAX_REQUEST_BODY_BYTES));
        req.destroy();
      }
    });
    req.on("error", reject);
    req.on("aborted", () =>
      reject(badRequest("the client closed the connection before the body was complete")),
    );
    req.on("end", () => {
      if (size > MAX_REQUEST_BODY_BYTES) reject(tooLarge("request body", MAX_REQUEST_BODY_BYTES));
      else resolve(Buffer.concat(chunks));
    });
  });
}

/**
 * Makes parsed input safe to work on: no `__proto__` keys (JSON.parse keeps them as own keys, and a
 * later `obj[key] = ...` would set a prototype) and no nesting past MAX_DEPTH. Walks iteratively.
 */
export function sanitize(value: unknown): unknown {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (depth > MAX_DEPTH) throw badRequest(`the request body is nested deeper than ${MAX_DEPTH} levels`);
    if (Array.isArray(v)) {
      for (const item of v) stack.push([item, depth + 1]);
      continue;
    }
    if (Object.prototype.hasOwnProperty.call(v, "__proto__"))
      delete (v as Record<string, unknown>)["__proto__"];
    const proto = Object.getPrototypeOf(v) as unknown;
    if (proto !== Object.prototype && proto !== null) Object.setPrototypeOf(v, Object.prototype);
    for (const item of Object.values(v)) stack.push([item, depth + 1]);
  }
  return value;
}

/**
 * The yaml library recurses per level, and deep flow collections (`[[[[...`) exhaust the heap
 * inside it (a fatal V8 error no try/catch sees): so YAML is checked for depth before it is parsed.
 * The count errs on the high side (brackets in strings count too), never on the low one.
 */
function assertYamlShallow(text: string): void {
  let flow = 0;
  let lineStart = true;
  let indent = 0;
  const tooDeep = (): never => {
    throw badRequest(`the request body is nested deeper than ${MAX_DEPTH} levels`);
  };
  for (const ch of text) {
    if (ch === "\n") {
      lineStart = true;
      indent = 0;
      continue;
    }
    if (lineStart && (ch === " " || ch === "-")) {
      if (++indent > 2 * MAX_DEPTH) tooDeep();
      continue;
    }
    lineStart = false;
    if (ch === "[" || ch === "{") {
      if (++flow > MAX_DEPTH) tooDeep();
    } else if (ch === "]" || ch === "}") flow = Math.max(0, flow - 1);
  }
}

/** JSON (or YAML, or Kubernetes protobuf) to plain, sanitized values; 400/415 when it is none of them. */
export function parseBody(raw: Buffer, contentType: string): unknown {
  if (/protobuf/.test(contentType)) {
    let decoded: unknown;
    try {
      decoded = decodeKubernetesProtobuf(raw);
    } catch (err) {
      throw new ApiError(415, "UnsupportedMediaType", (err as Error).message);
    }
    return sanitize(decoded);
  }
  if (/cbor/.test(contentType)) {
    throw new ApiError(
      415,
      "UnsupportedMediaType",
      `the body's content type "${contentType}" is not supported: lab-server accepts JSON and YAML`,
    );
  }
  const text = raw.toString("utf8");
  if (text.trim() === "") return undefined;
  const yaml = /yaml/.test(contentType);
  let parsed: unknown;
  if (yaml) assertYamlShallow(text);
  try {
    parsed = yaml ? parseYaml(text) : JSON.parse(text);
  } catch (err) {
    throw badRequest(`the request body is not valid ${yaml ? "YAML" : "JSON"}: ${(err as Error).message}`);
  }
  return sanitize(parsed);
}

/** A client's value in a message: quoted, and never able to throw (an object's toString may be anything). */
export function show(v: unknown): string {
  try {
    return JSON.stringify(v)?.slice(0, 200) ?? "undefined";
  } catch {
    return "(unprintable)";
  }
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** 413 when an object about to be stored would not fit etcd's request limit. */
export function assertStorable(obj: unknown, what = "object"): void {
  if (!storable(obj)) throw tooLarge(what);
}

function storable(obj: unknown): boolean {
  return Buffer.byteLength(JSON.stringify(obj) ?? "") <= MAX_BODY_BYTES;
}

/** The text of the body an object was read from (for duplicate-field checks). */
const bodyTexts = new WeakMap<object, Buffer>();

export function bodyText(body: object): string | undefined {
  return bodyTexts.get(body)?.toString("utf8");
}

/** Reads an object body; checks kind/apiVersion when given. */
export async function objectBody(
  req: IncomingMessage,
  info: ResourceInfo,
  kind: string,
  lenient = false,
): Promise<KObject> {
  const raw = await readBody(req);
  const body = parseBody(raw, req.headers["content-type"] ?? "");
  if (isObject(body)) bodyTexts.set(body, raw);
  return checkedObject(body, info, kind, lenient);
}

/** objectBody's checks of a parsed body (also for in-process callers, controlplane/local-client.ts). */
export function checkedObject(body: unknown, info: ResourceInfo, kind: string, lenient = false): KObject {
  if (!isObject(body)) throw badRequest("the request body must be a JSON or YAML object");
  if (body.kind !== undefined && body.kind !== kind && !lenient) {
    throw badRequest(`the body's kind ${show(body.kind)} does not match the resource (expected ${kind})`);
  }
  if (!lenient && body.apiVersion !== undefined && body.apiVersion !== groupVersion(info)) {
    throw badRequest(
      `the body's apiVersion ${show(body.apiVersion)} does not match the resource (expected ${groupVersion(info)})`,
    );
  }
  if (body.metadata === undefined) body.metadata = {};
  if (!isObject(body.metadata)) throw badRequest("metadata must be an object");
  if (!storable(body)) {
    // Too big for etcd: what the kind's validation says about it comes first, as in Kubernetes.
    const causes = validateObject(kind, body, info.namespaced);
    const name = typeof body.metadata.name === "string" ? body.metadata.name : "";
    if (causes.length) throw invalid(kind, name, causes, info.group);
    throw tooLarge();
  }
  return body as KObject;
}
