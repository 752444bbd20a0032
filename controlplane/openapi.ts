import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { groupVersion, RESOURCES, type ResourceInfo } from "../api/resources.ts";

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

function schemaName(info: ResourceInfo): string {
  const g = info.group === "" ? "core" : info.group.split(".")[0]!;
  return `io.k8s.api.${g}.${info.version}.${info.kind}`;
}

const FIELD_VALIDATION = {
  name: "fieldValidation",
  in: "query",
  description: "Strict, Warn or Ignore: how the server treats unknown or duplicate fields",
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
  const schemas: Record<string, unknown> = {};
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
    schemas[schemaName(info)] = {
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
  return {
    openapi: "3.0.0",
    info: { title: "lab-server", version: "v1.32.0-lab" },
    paths,
    components: { schemas },
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

function hashOf(doc: unknown): string {
  return createHash("sha512").update(JSON.stringify(doc)).digest("hex").slice(0, 128).toUpperCase();
}

export function openApiV3Index(): Record<string, unknown> {
  const paths: Record<string, unknown> = {};
  for (const gv of gvPaths())
    paths[gv.key] = {
      serverRelativeURL: `/openapi/v3/${gv.key}?hash=${hashOf(groupDoc(gv.group, gv.version))}`,
    };
  return { paths };
}

export function openApiV3Group(path: string): Record<string, unknown> | undefined {
  const gv = gvPaths().find((x) => x.key === path);
  return gv ? groupDoc(gv.group, gv.version) : undefined;
}

/**
 * The Swagger 2.0 document: the PATCH operation of every served kind, declaring `fieldValidation`
 * (what kubectl's v2 fallback looks for). No definitions: with a schema for a kind, kubectl would
 * validate objects and compute apply patches from it, and ours are not complete schemas; without
 * one it leaves validation to the server and uses its built-in types, as it does for v3.
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
  return { swagger: "2.0", info: { title: "lab-server", version: "v1.32.0-lab" }, paths, definitions: {} };
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
  if (Object.keys((doc.definitions as object | undefined) ?? {}).length > 0)
    throw new Error("encodeOpenApiV2: definitions are not encoded");
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

/** GET /openapi/v2 as upstream answers it: protobuf or JSON as the Accept header asks, else 406. */
export function serveOpenApiV2(req: IncomingMessage, res: ServerResponse): void {
  const accepted = (req.headers.accept ?? "*/*").split(",").map((a) => a.split(";")[0]!.trim().toLowerCase());
  for (const a of accepted) {
    let body: Buffer;
    let type: string;
    if (PROTOBUF_V2_ALIASES.has(a)) {
      body = encodeOpenApiV2(openApiV2());
      type = PROTOBUF_V2;
    } else if (a === "application/json" || a === "application/*" || a === "*/*" || a === "") {
      body = Buffer.from(JSON.stringify(openApiV2()));
      type = "application/json";
    } else continue;
    res.writeHead(200, { "Content-Type": type, "Content-Length": body.length });
    res.end(body);
    return;
  }
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
