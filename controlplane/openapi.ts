import { createHash } from "node:crypto";
import { groupVersion, RESOURCES, type ResourceInfo } from "../api/resources.ts";

/**
 * OpenAPI documents for kubectl. kubectl 1.32 asks /openapi/v3 whether the server validates fields
 * itself (the `fieldValidation` query parameter on the write operations); when it does, kubectl
 * leaves validation to the server and needs no client-side schema.
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

/** A Swagger 2.0 document with the same content, for clients that read only v2 as JSON. */
export function openApiV2(): Record<string, unknown> {
  const definitions: Record<string, unknown> = {};
  for (const info of RESOURCES) {
    definitions[schemaName(info)] = {
      type: "object",
      properties: { apiVersion: { type: "string" }, kind: { type: "string" }, metadata: { type: "object" } },
      "x-kubernetes-group-version-kind": gvk(info),
    };
  }
  return { swagger: "2.0", info: { title: "lab-server", version: "v1.32.0-lab" }, paths: {}, definitions };
}
