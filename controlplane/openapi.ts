import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { gzipSync } from "node:zlib";
import { groupVersion, RESOURCES, type ResourceInfo } from "../api/resources.ts";
import { definitionName, definitions, reachable, REF_PREFIX, type Schema } from "./openapi/definitions.ts";
import { readPrerendered } from "./openapi/prerendered.ts";

/**
 * OpenAPI documents for kubectl. kubectl 1.32 asks /openapi/v3 whether the server validates fields
 * itself (the `fieldValidation` query parameter on the write operations); when it does, kubectl
 * leaves validation to the server and needs no client-side schema. Only served group-versions
 * have a v3 document: for any other (an Ingress, a NetworkPolicy) kubectl finds none, validates the
 * object against /openapi/v2 instead, finds no schema there either and moves on, so the object
 * ends as `no matches for kind` while the rest of the file is applied. That needs /openapi/v2 in
 * protobuf, the only form kubectl reads it in (a JSON answer fails with `proto: cannot parse
 * invalid wire-format data`, a 406 with `the server was unable to respond with a content type that
 * the client supports`: kubectl 1.32 has no JSON fallback for v2).
 */

/** The schema of a kind: upstream's definition, else (a kind upstream lacks) an open object. */
function schemaName(info: ResourceInfo): string {
  const upstream = definitionName(info);
  if (upstream) return upstream;
  const g = info.group === "" ? "core" : info.group.split(".")[0]!;
  return `io.k8s.api.${g}.${info.version}.${info.kind}`;
}

function fallbackSchema(info: ResourceInfo): Schema {
  return {
    type: "object",
    description: `${info.kind} (${groupVersion(info)}), served by lab-server`,
    properties: {
      apiVersion: { type: "string" },
      kind: { type: "string" },
      metadata: { type: "object" },
    },
    "x-kubernetes-preserve-unknown-fields": true,
    "x-kubernetes-group-version-kind": gvk(info),
  };
}

/** The schemas of some kinds and of everything they reach, by name. */
function schemasOf(infos: readonly ResourceInfo[]): Record<string, Schema> {
  const defs = definitions();
  const out: Record<string, Schema> = {};
  const names = infos.map(definitionName).filter((n): n is string => n !== undefined);
  for (const n of [...reachable(names)].sort()) out[n] = defs[n]!;
  for (const info of infos) if (!definitionName(info)) out[schemaName(info)] = fallbackSchema(info);
  return out;
}

/**
 * A Swagger 2.0 schema in OpenAPI 3.0, as kube-apiserver converts it: references move to
 * components, and a reference with a description of its own becomes `allOf: [{$ref}]` (3.0
 * ignores the siblings of a `$ref`), which is where `kubectl explain` reads field descriptions.
 */
function toV3(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(toV3);
  if (typeof v !== "object" || v === null) return v;
  const o = v as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(o)) if (k !== "$ref") out[k] = toV3(x);
  if (typeof o.$ref === "string") {
    const ref = o.$ref.replace(REF_PREFIX, "#/components/schemas/");
    if (Object.keys(out).length === 0) return { $ref: ref };
    out.allOf = [{ $ref: ref }];
  }
  return out;
}

/** Types that are a string or a number, which OpenAPI 3 says with oneOf (as upstream's v3 does). */
const ONE_OF: Record<string, Schema> = {
  "io.k8s.apimachinery.pkg.api.resource.Quantity": { oneOf: [{ type: "string" }, { type: "number" }] },
  "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
    oneOf: [{ type: "integer" }, { type: "string" }],
    "x-kubernetes-int-or-string": true,
  },
};

function v3Schemas(infos: readonly ResourceInfo[]): Record<string, unknown> {
  const out = toV3(schemasOf(infos)) as Record<string, Schema>;
  for (const [name, replacement] of Object.entries(ONE_OF)) {
    const s = out[name];
    if (s) out[name] = { description: s.description, ...replacement };
  }
  return out;
}

const FIELD_VALIDATION = {
  name: "fieldValidation",
  in: "query",
  description:
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn (the default) and Strict.",
  schema: { type: "string", uniqueItems: true },
};

function gvk(info: ResourceInfo): Record<string, unknown>[] {
  return [{ group: info.group, version: info.version, kind: info.kind }];
}

function operation(info: ResourceInfo, action: string, withValidation: boolean): Record<string, unknown> {
  const ref = { $ref: `#/components/schemas/${schemaName(info)}` };
  const op: Record<string, unknown> = {
    operationId: `${action}${info.kind}`,
    "x-kubernetes-action": action,
    "x-kubernetes-group-version-kind": gvk(info)[0],
    responses: { "200": { description: "OK", content: { "application/json": { schema: ref } } } },
  };
  if (withValidation) {
    op.parameters = [FIELD_VALIDATION];
    op.requestBody = { content: { "*/*": { schema: ref } } };
  }
  return op;
}

function groupDoc(group: string, version: string): Record<string, unknown> {
  const infos = RESOURCES.filter((r) => r.group === group && r.version === version);
  const paths: Record<string, unknown> = {};
  const root = group ? `/apis/${group}/${version}` : `/api/${version}`;
  for (const info of infos) {
    const collection = info.namespaced
      ? `${root}/namespaces/{namespace}/${info.plural}`
      : `${root}/${info.plural}`;
    paths[collection] = { get: operation(info, "list", false), post: operation(info, "post", true) };
    paths[`${collection}/{name}`] = {
      get: operation(info, "get", false),
      put: operation(info, "put", true),
      patch: operation(info, "patch", true),
      delete: operation(info, "delete", false),
    };
    if (info.status)
      paths[`${collection}/{name}/status`] = {
        get: operation(info, "get", false),
        put: operation(info, "put", true),
        patch: operation(info, "patch", true),
      };
  }
  return {
    openapi: "3.0.0",
    info: { title: "Kubernetes", version: "v1.32.0-lab" },
    paths,
    components: { schemas: v3Schemas(infos) },
  };
}

function gvPaths(): { key: string; group: string; version: string }[] {
  const seen = new Map<string, { key: string; group: string; version: string }>();
  for (const r of RESOURCES) {
    const key = r.group ? `apis/${r.group}/${r.version}` : `api/${r.version}`;
    seen.set(key, { key, group: r.group, version: r.version });
  }
  return [...seen.values()];
}

/** A document served as-is: its JSON once, gzipped once, and its ETag. */
interface Rendered {
  body: Buffer;
  gzip?: Buffer;
  etag: string;
  type: string;
}

function render(body: Buffer, type: string): Rendered {
  const hash = createHash("sha512").update(body).digest("hex").slice(0, 128).toUpperCase();
  return { body, etag: `"${hash}"`, type };
}

/**
 * Every document, made once per process (RESOURCES does not change while it runs), or read as
 * the lab-server bundle ships it: rendered at build time (prerenderOpenApi, written by
 * bootstrap/artifacts.ts), because rendering the v3 index (every group's document, for their
 * hashes) held a TCG master's event loop for over 10 s, its health port answered 503 and
 * keepalived dropped the VIP on every master that kubectl apply asked in turn.
 */
const rendered = new Map<string, Rendered>();

function cached(key: string, make: () => Rendered): Rendered {
  let r = rendered.get(key);
  if (!r) {
    const shipped = readPrerendered(key);
    r = shipped ? render(shipped, key === "v2.pb" ? PROTOBUF_V2 : "application/json") : make();
    rendered.set(key, r);
  }
  return r;
}

/** Every document lab-server serves, by its cache key, as bytes (for the bundle to ship). */
export function prerenderOpenApi(): { key: string; body: Buffer }[] {
  const docs = ["v2.pb", "v2.json", "v3", ...gvPaths().map((gv) => `v3/${gv.key}`)];
  return docs.map((key) => {
    const r =
      key === "v2.pb"
        ? cached(key, () => render(encodeOpenApiV2(openApiV2()), PROTOBUF_V2))
        : key === "v2.json"
          ? cached(key, () => render(Buffer.from(JSON.stringify(openApiV2())), "application/json"))
          : key === "v3"
            ? cached(key, () => render(Buffer.from(JSON.stringify(openApiV3Index())), "application/json"))
            : v3Group(key.slice("v3/".length))!;
    return { key, body: r.body };
  });
}

function v3Group(path: string): Rendered | undefined {
  const gv = gvPaths().find((x) => x.key === path);
  if (!gv) return undefined;
  return cached(`v3/${path}`, () =>
    render(Buffer.from(JSON.stringify(groupDoc(gv.group, gv.version))), "application/json"),
  );
}

export function openApiV3Index(): Record<string, unknown> {
  const paths: Record<string, unknown> = {};
  for (const gv of gvPaths())
    paths[gv.key] = {
      serverRelativeURL: `/openapi/v3/${gv.key}?hash=${v3Group(gv.key)!.etag.slice(1, -1)}`,
    };
  return { paths };
}

export function openApiV3Group(path: string): Record<string, unknown> | undefined {
  const r = v3Group(path);
  return r ? (JSON.parse(r.body.toString()) as Record<string, unknown>) : undefined;
}

/**
 * The Swagger 2.0 document: every served kind's PATCH operation, declaring `fieldValidation`
 * (what kubectl's v2 fallback looks for), and upstream's definitions of the served kinds.
 */
export function openApiV2(): Record<string, unknown> {
  const paths: Record<string, unknown> = {};
  for (const info of RESOURCES) {
    const root = info.group ? `/apis/${info.group}/${info.version}` : `/api/${info.version}`;
    const ns = info.namespaced ? "/namespaces/{namespace}" : "";
    paths[`${root}${ns}/${info.plural}/{name}`] = {
      patch: {
        operationId: `patch${info.kind}`,
        parameters: [
          {
            name: "fieldValidation",
            in: "query",
            type: "string",
            uniqueItems: true,
            description: FIELD_VALIDATION.description,
          },
        ],
        responses: { "200": { description: "OK" } },
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": gvk(info)[0],
      },
    };
  }
  return {
    swagger: "2.0",
    info: { title: "Kubernetes", version: "v1.32.0-lab" },
    paths,
    definitions: schemasOf(RESOURCES),
  };
}

// Protobuf encoding of the v2 document (gnostic's openapi_v2.Document, field numbers from
// OpenAPIv2.proto), for exactly the parts openApiV2() uses.

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}
const bytesField = (num: number, b: Buffer): Buffer =>
  Buffer.concat([varint((num << 3) | 2), varint(b.length), b]);
const str = (num: number, v: string | undefined): Buffer =>
  v === undefined || v === "" ? Buffer.alloc(0) : bytesField(num, Buffer.from(v, "utf8"));
const msg = (num: number, ...parts: Buffer[]): Buffer => bytesField(num, Buffer.concat(parts));
const bool = (num: number, v: unknown): Buffer =>
  v ? Buffer.concat([varint(num << 3), Buffer.from([1])]) : Buffer.alloc(0);

/** A scalar or object extension value in YAML (JSON is YAML), as gnostic keeps it. */
function namedAny(num: number, name: string, value: unknown): Buffer {
  return msg(num, str(1, name), msg(2, str(2, `${JSON.stringify(value)}\n`)));
}

function encodeOperation(num: number, op: Record<string, unknown>): Buffer {
  const parts: Buffer[] = [str(5, op.operationId as string)];
  for (const p of (op.parameters as Record<string, unknown>[] | undefined) ?? []) {
    // ParametersItem.parameter → Parameter.non_body_parameter → NonBodyParameter.query_parameter_sub_schema
    const query = Buffer.concat([
      bool(1, p.required),
      str(2, p.in as string),
      str(3, p.description as string),
      str(4, p.name as string),
      str(6, p.type as string),
      bool(20, p.uniqueItems),
    ]);
    parts.push(msg(8, msg(1, msg(2, msg(3, query)))));
  }
  const responses = Object.entries((op.responses as Record<string, { description?: string }>) ?? {}).map(
    ([code, r]) => msg(1, str(1, code), msg(2, msg(1, str(1, r.description)))),
  );
  parts.push(msg(9, ...responses));
  for (const [k, v] of Object.entries(op)) if (k.startsWith("x-")) parts.push(namedAny(13, k, v));
  return msg(num, ...parts);
}

const OPERATION_FIELDS: Record<string, number> = { get: 2, put: 3, post: 4, delete: 5, patch: 8 };

export function encodeOpenApiV2(doc: Record<string, unknown>): Buffer {
  const info = doc.info as { title?: string; version?: string };
  const paths = Object.entries(doc.paths as Record<string, Record<string, Record<string, unknown>>>).map(
    ([path, item]) =>
      msg(
        2,
        str(1, path),
        msg(2, ...Object.entries(item).map(([verb, op]) => encodeOperation(OPERATION_FIELDS[verb]!, op))),
      ),
  );
  // The definitions stay out of the protobuf form, the one kubectl reads: with them kubectl would
  // validate objects itself instead of asking the server (fieldValidation), as it does with v3.
  return Buffer.concat([
    str(1, doc.swagger as string),
    msg(2, str(1, info.title), str(2, info.version)),
    msg(8, ...paths),
  ]);
}

/** What kubectl asks for; `@` is no token character, so the answer's Content-Type spells it `.v1.0` (as upstream). */
const PROTOBUF_V2_ASKED = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
const PROTOBUF_V2 = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
const PROTOBUF_V2_ALIASES = new Set([PROTOBUF_V2_ASKED, PROTOBUF_V2]);

function notAcceptable(req: IncomingMessage, res: ServerResponse): void {
  const status = JSON.stringify({
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message: `none of the media types "${req.headers.accept ?? ""}" is served; use application/json or ${PROTOBUF_V2_ASKED}`,
    reason: "NotAcceptable",
    code: 406,
  });
  res.writeHead(406, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(status) });
  res.end(status);
}

/** Answers a rendered document: 304 for a matching If-None-Match, gzip when the client takes it. */
function send(req: IncomingMessage, res: ServerResponse, r: Rendered, immutable = false): void {
  const headers: Record<string, string | number> = {
    "Content-Type": r.type,
    ETag: r.etag,
    Vary: "Accept, Accept-Encoding",
    "Cache-Control": immutable ? "public, immutable" : "no-cache, private",
  };
  const match = (req.headers["if-none-match"] ?? "").split(",").map((t) => t.trim());
  if (match.includes(r.etag) || match.includes("*")) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  let body = r.body;
  if (/\bgzip\b/.test(String(req.headers["accept-encoding"] ?? "")) && body.length > 1024) {
    r.gzip ??= gzipSync(r.body);
    body = r.gzip;
    headers["Content-Encoding"] = "gzip";
  }
  headers["Content-Length"] = body.length;
  res.writeHead(200, headers);
  res.end(body);
}

/** GET /openapi/v2 as upstream answers it: protobuf or JSON as the Accept header asks, else 406. */
export function serveOpenApiV2(req: IncomingMessage, res: ServerResponse): void {
  const accepted = (req.headers.accept ?? "*/*").split(",").map((a) => a.split(";")[0]!.trim().toLowerCase());
  for (const a of accepted) {
    if (PROTOBUF_V2_ALIASES.has(a))
      return send(
        req,
        res,
        cached("v2.pb", () => render(encodeOpenApiV2(openApiV2()), PROTOBUF_V2)),
      );
    if (a === "application/json" || a === "application/*" || a === "*/*" || a === "")
      return send(
        req,
        res,
        cached("v2.json", () => render(Buffer.from(JSON.stringify(openApiV2())), "application/json")),
      );
  }
  notAcceptable(req, res);
}

/**
 * GET /openapi/v3 (the index) and /openapi/v3/<group-version>: JSON, made once, with an ETag; a
 * request carrying the index's `hash` may be cached for good, as upstream marks it. false: no
 * such document.
 */
export function serveOpenApiV3(req: IncomingMessage, res: ServerResponse, path: string): boolean {
  if (path === "/openapi/v3") {
    send(
      req,
      res,
      cached("v3", () => render(Buffer.from(JSON.stringify(openApiV3Index())), "application/json")),
    );
    return true;
  }
  const r = v3Group(path.slice("/openapi/v3/".length));
  if (!r) return false;
  const hash = new URL(req.url ?? "/", "https://x").searchParams.get("hash");
  send(req, res, r, hash !== null && hash === r.etag.slice(1, -1));
  return true;
}
