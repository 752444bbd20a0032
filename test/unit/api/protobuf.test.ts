import { describe, expect, it } from "vitest";
import { decodeKubernetesProtobuf, ProtobufError } from "../../../api/protobuf.ts";

// A minimal protobuf writer: enough to build what kubectl's typed clients send.
const varint = (n: number): number[] => {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
};
const bytesField = (num: number, data: Buffer): Buffer =>
  Buffer.from([...varint((num << 3) | 2), ...varint(data.length), ...data]);
const str = (num: number, s: string): Buffer => bytesField(num, Buffer.from(s));
const int = (num: number, n: number): Buffer => Buffer.from([...varint(num << 3), ...varint(n)]);
const msg = (num: number, ...parts: Buffer[]): Buffer => bytesField(num, Buffer.concat(parts));
const entry = (num: number, k: string, v: Buffer): Buffer => msg(num, str(1, k), v);

function envelope(apiVersion: string, kind: string, raw: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from("k8s\0", "binary"),
    msg(1, str(1, apiVersion), str(2, kind)),
    bytesField(2, raw),
  ]);
}

describe("Kubernetes protobuf bodies", () => {
  it("decodes a ConfigMap, dropping Go's empty defaults", () => {
    const raw = Buffer.concat([
      msg(1, str(1, "conf"), str(2, ""), str(3, "team"), msg(8), entry(11, "app", str(2, "web"))),
      entry(2, "a", str(2, "b")),
    ]);
    expect(decodeKubernetesProtobuf(envelope("v1", "ConfigMap", raw))).toEqual({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "conf", namespace: "team", labels: { app: "web" } },
      data: { a: "b" },
    });
  });

  it("decodes a Deployment with replicas 0 kept and IntOrString strategy values", () => {
    const container = msg(2, str(1, "nginx"), str(2, "nginx:1.25"), msg(6, int(3, 80)), msg(8));
    const spec = msg(
      2,
      int(1, 0),
      msg(2, entry(1, "app", str(2, "api"))),
      msg(3, msg(1, entry(11, "app", str(2, "api"))), msg(2, container)),
      msg(4, str(1, "RollingUpdate"), msg(2, msg(1, int(1, 1), str(3, "25%")), msg(2, int(2, 2)))),
    );
    const d = decodeKubernetesProtobuf(
      envelope("apps/v1", "Deployment", Buffer.concat([msg(1, str(1, "api")), spec])),
    );
    expect(d.spec).toEqual({
      replicas: 0,
      selector: { matchLabels: { app: "api" } },
      template: {
        metadata: { labels: { app: "api" } },
        spec: {
          containers: [{ name: "nginx", image: "nginx:1.25", ports: [{ containerPort: 80 }], resources: {} }],
        },
      },
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: "25%", maxSurge: 2 } },
    });
  });

  it("refuses kinds it has no schema for and non-envelopes", () => {
    expect(() => decodeKubernetesProtobuf(envelope("v1", "Pod", Buffer.alloc(0)))).toThrow(
      /send Pod as JSON or YAML/,
    );
    expect(() => decodeKubernetesProtobuf(Buffer.from("{}"))).toThrow(ProtobufError);
  });
});
