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
} from "../../../controlplane/openapi.ts";

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

function call(accept: string | undefined): { code: number; type: string; body: Buffer } {
  const out = { code: 0, type: "", body: Buffer.alloc(0) };
  const res = {
    writeHead(code: number, headers: Record<string, string | number>) {
      out.code = code;
      out.type = String(headers["Content-Type"]);
    },
    end(b: Buffer | string) {
      out.body = Buffer.from(b);
    },
  } as unknown as ServerResponse;
  serveOpenApiV2({ headers: accept === undefined ? {} : { accept } } as IncomingMessage, res);
  return out;
}

describe("OpenAPI v2", () => {
  it("encodes as gnostic's protobuf: every served kind's PATCH with fieldValidation and its GVK", () => {
    const Document = protobuf.parse(PROTO).root.lookupType("openapi.v2.Document");
    const doc = Document.toObject(Document.decode(encodeOpenApiV2(openApiV2()))) as Decoded;
    expect(doc.swagger).toBe("2.0");
    expect(doc.info.title).toBe("lab-server");
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
