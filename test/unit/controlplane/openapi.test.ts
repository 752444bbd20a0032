import type { IncomingMessage, ServerResponse } from "node:http";
import protobuf from "protobufjs";
import { parse as parseYaml } from "yaml";
import { describe, expect, it } from "vitest";
import { RESOURCES } from "../../../api/resources.ts";
import {
  encodeOpenApiV2,
  openApiV2,
  openApiV3Group,
  openApiV3Index,
  serveOpenApiV2,
  serveOpenApiV3,
} from "../../../controlplane/openapi.ts";
import { gunzipSync } from "node:zlib";

// The part of gnostic's OpenAPIv2.proto (package openapi.v2) the document uses, same field numbers.
const PROTO = `
syntax = "proto3";
package openapi.v2;
message Any { string yaml = 2; }
message NamedAny { string name = 1; Any value = 2; }
message Info { string title = 1; string version = 2; }
message QueryParameterSubSchema { bool required = 1; string in = 2; string description = 3; string name = 4; string type = 6; bool unique_items = 20; }
message NonBodyParameter { QueryParameterSubSchema query_parameter_sub_schema = 3; }
message Parameter { NonBodyParameter non_body_parameter = 2; }
message ParametersItem { Parameter parameter = 1; }
message Response { string description = 1; }
message ResponseValue { Response response = 1; }
message NamedResponseValue { string name = 1; ResponseValue value = 2; }
message Responses { repeated NamedResponseValue response_code = 1; }
message Operation { string operation_id = 5; repeated ParametersItem parameters = 8; Responses responses = 9; repeated NamedAny vendor_extension = 13; }
message PathItem { Operation get = 2; Operation patch = 8; }
message NamedPathItem { string name = 1; PathItem value = 2; }
message Paths { repeated NamedPathItem path = 2; }
message Document { string swagger = 1; Info info = 2; Paths paths = 8; }
`;

interface Decoded {
  swagger: string;
  info: { title: string };
  paths: {
    path: {
      name: string;
      value: {
        patch?: {
          operationId: string;
          parameters: {
            parameter: { nonBodyParameter: { queryParameterSubSchema: Record<string, unknown> } };
          }[];
          vendorExtension: { name: string; value: { yaml: string } }[];
        };
      };
    }[];
  };
}

interface Answer {
  code: number;
  type: string;
  headers: Record<string, string | number>;
  body: Buffer;
}

function fakeRes(out: Answer): ServerResponse {
  return {
    writeHead(code: number, headers: Record<string, string | number>) {
      out.code = code;
      out.type = String(headers["Content-Type"]);
      out.headers = headers;
    },
    end(b?: Buffer | string) {
      out.body = Buffer.from(b ?? "");
    },
  } as unknown as ServerResponse;
}

function call(accept: string | undefined): Answer {
  const out: Answer = { code: 0, type: "", headers: {}, body: Buffer.alloc(0) };
  serveOpenApiV2({ headers: accept === undefined ? {} : { accept } } as IncomingMessage, fakeRes(out));
  return out;
}

function callV3(path: string, headers: Record<string, string> = {}): Answer {
  const out: Answer = { code: 0, type: "", headers: {}, body: Buffer.alloc(0) };
  const found = serveOpenApiV3({ headers, url: path } as IncomingMessage, fakeRes(out), path.split("?")[0]!);
  if (!found) out.code = 404;
  return out;
}

describe("OpenAPI v2", () => {
  it("encodes as gnostic's protobuf: every served kind's PATCH with fieldValidation and its GVK", () => {
    const Document = protobuf.parse(PROTO).root.lookupType("openapi.v2.Document");
    const doc = Document.toObject(Document.decode(encodeOpenApiV2(openApiV2()))) as Decoded;
    expect(doc.swagger).toBe("2.0");
    expect(doc.info.title).toBe("Kubernetes");
    const pods = doc.paths.path.find((p) => p.name === "/api/v1/namespaces/{namespace}/pods/{name}");
    const patch = pods?.value.patch;
    expect(patch?.operationId).toBe("patchPod");
    expect(patch?.parameters[0]?.parameter.nonBodyParameter.queryParameterSubSchema).toMatchObject({
      name: "fieldValidation",
      in: "query",
      type: "string",
      uniqueItems: true,
    });
    const gvk = patch?.vendorExtension.find((e) => e.name === "x-kubernetes-group-version-kind");
    expect(parseYaml(gvk!.value.yaml)).toEqual({ group: "", version: "v1", kind: "Pod" });
    const deployments = doc.paths.path.find(
      (p) => p.name === "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
    );
    const dGvk = deployments?.value.patch?.vendorExtension.find(
      (e) => e.name === "x-kubernetes-group-version-kind",
    );
    expect(parseYaml(dGvk!.value.yaml)).toEqual({ group: "apps", version: "v1", kind: "Deployment" });
  });

  it("answers protobuf or JSON as asked, 406 for anything else", () => {
    const pb = call("application/com.github.proto-openapi.spec.v2@v1.0+protobuf");
    expect(pb.code).toBe(200);
    // `@` is no token character: Go's mime parser (kubectl) rejects it in a Content-Type
    expect(pb.type).toBe("application/com.github.proto-openapi.spec.v2.v1.0+protobuf");
    expect(pb.body.equals(encodeOpenApiV2(openApiV2()))).toBe(true);
    for (const accept of [undefined, "application/json", "*/*", "text/html, application/json;q=0.9"]) {
      const j = call(accept);
      expect([j.code, j.type]).toEqual([200, "application/json"]);
      expect(JSON.parse(j.body.toString())).toMatchObject({ swagger: "2.0" });
    }
    const no = call("text/html");
    expect(no.code).toBe(406);
    expect(JSON.parse(no.body.toString())).toMatchObject({
      kind: "Status",
      reason: "NotAcceptable",
      code: 406,
    });
  });
});

describe("OpenAPI v3", () => {
  it("lists only served group-versions; others have no document", () => {
    const paths = Object.keys((openApiV3Index() as { paths: Record<string, unknown> }).paths).sort();
    const served = [
      ...new Set(RESOURCES.map((r) => (r.group ? `apis/${r.group}/${r.version}` : `api/${r.version}`))),
    ];
    expect(paths).toEqual(served.sort());
    expect(paths).toContain("api/v1");
    expect(openApiV3Group("apis/example.com/v1")).toBeUndefined();
    expect(openApiV3Group("api/v1")).toMatchObject({ openapi: "3.0.0" });
  });
});

describe("OpenAPI schemas from upstream's definitions", () => {
  type Schema = Record<string, unknown> & { properties?: Record<string, Schema> };
  const schemas = (path: string): Record<string, Schema> =>
    (openApiV3Group(path) as { components: { schemas: Record<string, Schema> } }).components.schemas;

  it("v3 carries every served kind's full schema, with GVK, list types and allOf descriptions", () => {
    for (const info of RESOURCES) {
      const key = info.group ? `apis/${info.group}/${info.version}` : `api/${info.version}`;
      const found = Object.values(schemas(key)).find((s) =>
        (s["x-kubernetes-group-version-kind"] as { kind: string; group: string }[] | undefined)?.some(
          (g) => g.kind === info.kind && g.group === info.group,
        ),
      );
      expect(found, info.kind).toBeDefined();
    }
    const apps = schemas("apis/apps/v1");
    const spec = apps["io.k8s.api.apps.v1.DeploymentSpec"]!;
    expect(spec.properties!.replicas).toMatchObject({ type: "integer", format: "int32" });
    expect(spec.properties!.template).toMatchObject({
      allOf: [{ $ref: "#/components/schemas/io.k8s.api.core.v1.PodTemplateSpec" }],
    });
    expect(String(spec.properties!.template!.description)).toMatch(/Template describes the pods/);
    const ports = apps["io.k8s.api.core.v1.Container"]!.properties!.ports!;
    expect(ports).toMatchObject({
      "x-kubernetes-list-type": "map",
      "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
      "x-kubernetes-patch-merge-key": "containerPort",
      "x-kubernetes-patch-strategy": "merge",
    });
    // no reference is left pointing at Swagger 2.0's definitions
    expect(JSON.stringify(apps)).not.toContain("#/definitions/");
  });

  it("v2 JSON has the definitions; documents are cached with an ETag, 304 and gzip", () => {
    const v2 = JSON.parse(call("application/json").body.toString()) as {
      definitions: Record<string, unknown>;
    };
    expect(v2.definitions["io.k8s.api.apps.v1.Deployment"]).toBeDefined();
    const index = JSON.parse(callV3("/openapi/v3").body.toString()) as {
      paths: Record<string, { serverRelativeURL: string }>;
    };
    const url = index.paths["apis/apps/v1"]!.serverRelativeURL;
    const first = callV3(url);
    expect(first.code).toBe(200);
    expect(first.headers["Cache-Control"]).toBe("public, immutable");
    const etag = String(first.headers.ETag);
    expect(url).toContain(`hash=${etag.slice(1, -1)}`);
    expect(callV3(url, { "if-none-match": etag }).code).toBe(304);
    const gz = callV3("/openapi/v3/apis/apps/v1", { "accept-encoding": "gzip, deflate" });
    expect(gz.headers["Content-Encoding"]).toBe("gzip");
    expect(gunzipSync(gz.body).equals(first.body)).toBe(true);
    expect(callV3("/openapi/v3/apis/networking.k8s.io/v1").code).toBe(404);
  });
});
