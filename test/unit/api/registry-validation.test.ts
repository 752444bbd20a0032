import { readFileSync, readdirSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { describe, expect, it } from "vitest";
import { applyDefaults } from "../../../api/defaults.ts";
import { invalid } from "../../../api/status.ts";
import { validateObject, validateObjectUpdate } from "../../../api/validation.ts";
import { base64ErrorAt } from "../../../api/validation/base64.ts";
import { generate } from "../../../api/validation/k8s-types-gen.ts";
import MODELS from "../../../api/validation/k8s-types.json" with { type: "json" };

type Obj = Record<string, unknown>;
const NAMESPACED: Record<string, boolean> = { Namespace: false, Node: false };
const check = (kind: string, o: Obj) => validateObject(kind, o, NAMESPACED[kind] ?? true);
const fields = (kind: string, o: Obj) => check(kind, o).map((c) => c.field);
const messages = (kind: string, o: Obj) => check(kind, o).map((c) => `${c.field}: ${c.message}`);
const cm = (extra: Obj, meta: Obj = {}): Obj => ({ metadata: { name: "x", ...meta }, ...extra });

describe("object meta, as apimachinery's ValidateObjectMeta", () => {
  it("refuses a numeric annotation value and names the key", () => {
    const causes = check("ConfigMap", cm({}, { annotations: { a: 5 } }));
    expect(causes).toEqual([
      {
        field: "metadata.annotations",
        reason: "FieldValueInvalid",
        message: 'Invalid value: 5: the value of "a" must be a string',
      },
    ]);
    expect(invalid("ConfigMap", "x", causes).message).toBe(
      'ConfigMap "x" is invalid: metadata.annotations: Invalid value: 5: the value of "a" must be a string',
    );
  });

  it("refuses annotations over 256 KiB in total and bad annotation keys", () => {
    expect(messages("ConfigMap", cm({}, { annotations: { a: "x".repeat(256 * 1024) } }))).toEqual([
      "metadata.annotations: Too long: must have at most 262144 bytes",
    ]);
    expect(messages("ConfigMap", cm({}, { annotations: { "a/b/c": "v" } }))[0]).toMatch(
      /^metadata.annotations: Invalid value: "a\/b\/c": a qualified name must consist of/,
    );
  });

  it("checks label keys (prefix, name part, 63 characters) and values with upstream's texts", () => {
    expect(messages("ConfigMap", cm({}, { labels: { ["k".repeat(64)]: "v" } }))).toEqual([
      `metadata.labels: Invalid value: "${"k".repeat(64)}": name part must be no more than 63 characters`,
    ]);
    expect(messages("ConfigMap", cm({}, { labels: { "Bad_Prefix/x": "v" } }))[0]).toContain(
      "prefix part a lowercase RFC 1123 subdomain must consist of",
    );
    expect(messages("ConfigMap", cm({}, { labels: { app: "-x" } }))).toEqual([
      `metadata.labels: Invalid value: "-x": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`,
    ]);
    expect(fields("ConfigMap", cm({}, { labels: { app: 3 } }))).toEqual(["metadata.labels"]);
    expect(check("ConfigMap", cm({}, { labels: { "example.com/app": "a.b_c-d", empty: "" } }))).toEqual([]);
  });

  it("refuses finalizers that are not a list of qualified names", () => {
    expect(messages("ConfigMap", cm({}, { finalizers: 5 }))).toEqual([
      "metadata.finalizers: Invalid value: 5: must be a list of strings",
    ]);
    expect(fields("ConfigMap", cm({}, { finalizers: ["a b"] }))).toEqual(["metadata.finalizers"]);
    expect(check("ConfigMap", cm({}, { finalizers: ["kubernetes", "example.com/cleanup"] }))).toEqual([]);
  });

  it("checks names per kind and generateName as a prefix", () => {
    expect(messages("Service", { metadata: { name: "1web" }, spec: { ports: [{ port: 80 }] } })[0]).toContain(
      "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character",
    );
    expect(messages("Namespace", { metadata: { name: "a.b" } })).toEqual([
      'metadata.name: Invalid value: "a.b": must not contain dots',
    ]);
    expect(check("ConfigMap", cm({}, { name: "web-", generateName: "web-" }))).toHaveLength(1);
    expect(check("ConfigMap", { metadata: { name: "web-x1z2q", generateName: "web-" } })).toEqual([]);
    expect(messages("ConfigMap", { metadata: {} })).toEqual([
      "metadata.name: Required value: name or generateName is required",
    ]);
    expect(fields("ConfigMap", { metadata: { name: 7 } })).toEqual(["metadata.name"]);
  });

  it("needs apiVersion, kind, name and uid in owner references, and one controller at most", () => {
    const owner = { apiVersion: "apps/v1", kind: "ReplicaSet", name: "rs", uid: "u1", controller: true };
    expect(check("ConfigMap", cm({}, { ownerReferences: [owner] }))).toEqual([]);
    expect(
      fields("ConfigMap", cm({}, { ownerReferences: [{ ...owner, uid: undefined, controller: "yes" }] })),
    ).toEqual(["metadata.ownerReferences[0].uid", "metadata.ownerReferences[0].controller"]);
    expect(messages("ConfigMap", cm({}, { ownerReferences: [owner, { ...owner, name: "b" }] }))[0]).toContain(
      'Only one reference can have Controller set to true. Found "true" in references for rs and b',
    );
    expect(fields("ConfigMap", cm({}, { ownerReferences: "rs" }))).toEqual(["metadata.ownerReferences"]);
  });
});

describe("field types, from upstream's OpenAPI models", () => {
  it("refuses a Node whose nodeInfo.kubeletVersion is an object", () => {
    expect(
      messages("Node", {
        metadata: { name: "n" },
        status: { nodeInfo: { kubeletVersion: { toString: 1 } } },
      }),
    ).toEqual(['status.nodeInfo.kubeletVersion: Invalid value: {"toString":1}: must be of type string']);
  });

  it("refuses an Event whose involvedObject.name is an object", () => {
    expect(
      fields("Event", {
        metadata: { name: "e" },
        involvedObject: { kind: "Pod", name: { a: 1 } },
        reason: "X",
      }),
    ).toEqual(["involvedObject.name"]);
  });

  it("checks conditions, integers, booleans, int-or-string and quantities", () => {
    const node = {
      metadata: { name: "n" },
      spec: { unschedulable: "yes" },
      status: {
        conditions: [{ type: "Ready", status: true }, "Ready"],
        capacity: { cpu: 2, memory: "1Gi", pods: {} },
        daemonEndpoints: { kubeletEndpoint: { Port: 10250.5 } },
      },
    };
    expect(fields("Node", node)).toEqual([
      "spec.unschedulable",
      "status.conditions[0].status",
      "status.conditions[1]",
      "status.capacity[pods]",
      "status.daemonEndpoints.kubeletEndpoint.Port",
    ]);
    const pod = {
      metadata: { name: "p" },
      spec: {
        containers: [
          {
            name: "c",
            image: "i",
            ports: [{ containerPort: "80" }],
            readinessProbe: { httpGet: { port: "http", path: "/" } },
            resources: { limits: { cpu: 1, memory: "64Mi" }, requests: { cpu: 0.5 } },
          },
        ],
      },
    };
    expect(messages("Pod", pod)).toEqual([
      'spec.containers[0].ports[0].containerPort: Invalid value: "80": must be of type integer',
    ]);
  });

  it("takes null as absent and keeps fields it does not model", () => {
    expect(
      check("Pod", {
        metadata: { name: "p", creationTimestamp: null },
        spec: { containers: [{ name: "c", image: "i", env: null }], futureField: { x: 1 } },
        status: { conditions: [{ type: "PodScheduled", status: "True", lastProbeTime: null }] },
      }),
    ).toEqual([]);
  });

  it("redacts Secret values in type errors", () => {
    expect(messages("Secret", { metadata: { name: "s" }, data: { k: 5 } })).toEqual([
      'data[k]: Invalid value: "<secret contents redacted>": must be of type string',
    ]);
  });

  it("k8s-types.json is what the installed @kubernetes/client-node generates", async () => {
    expect(await generate()).toEqual(MODELS);
  });
});

describe("ConfigMaps and Secrets", () => {
  it("reports where base64 breaks, as Go's decoder does", () => {
    expect(base64ErrorAt("aGVsbG8=")).toBeUndefined();
    expect(base64ErrorAt("aGVs\nbG8=\n")).toBeUndefined();
    expect(base64ErrorAt("")).toBeUndefined();
    expect(base64ErrorAt("not base64!")).toBe(3);
    expect(base64ErrorAt("abc")).toBe(0);
    expect(base64ErrorAt("YQ=")).toBe(3);
    expect(base64ErrorAt("YQ==YQ==")).toBe(4);
    expect(base64ErrorAt("Y===")).toBe(1);
  });

  it("refuses Secret data that is not base64 without echoing it", () => {
    expect(
      messages("Secret", { metadata: { name: "s" }, type: "Opaque", data: { password: "hunter2!" } }),
    ).toEqual([
      'data[password]: Invalid value: "<secret contents redacted>": illegal base64 data at input byte 7',
    ]);
  });

  it("refuses more than 1 MiB of data with upstream's field paths", () => {
    const big = "x".repeat(1024 * 1024 + 1);
    expect(messages("ConfigMap", cm({ data: { big } }))).toEqual([
      "[]: Too long: must have at most 1048576 bytes",
    ]);
    const secret = { metadata: { name: "s" }, data: { big: Buffer.from(big).toString("base64") } };
    expect(messages("Secret", secret)).toEqual(["data: Too long: must have at most 1048576 bytes"]);
    expect(check("ConfigMap", cm({ data: { ok: "x".repeat(1024 * 1024) } }))).toEqual([]);
  });

  it("checks keys, binaryData and duplicate keys", () => {
    expect(fields("ConfigMap", cm({ data: { "a b": "v", "..x": "v" } }))).toEqual(["data[a b]", "data[..x]"]);
    expect(messages("ConfigMap", cm({ data: { k: "v" }, binaryData: { k: "dg==" } }))).toEqual([
      'binaryData[k]: Invalid value: "k": duplicate of key present in data',
    ]);
    expect(fields("ConfigMap", cm({ binaryData: { b: "!!" } }))).toEqual(["binaryData[b]"]);
  });

  it("keeps an immutable ConfigMap's data and a Secret's type", () => {
    const old = cm({ immutable: true, data: { k: "v" } });
    const next = cm({ immutable: true, data: { k: "w" } });
    expect(validateObjectUpdate("ConfigMap", next, old, true).map((c) => `${c.field}: ${c.message}`)).toEqual(
      ["data: Forbidden: field is immutable when `immutable` is set"],
    );
    expect(
      validateObjectUpdate("ConfigMap", cm({ data: { k: "v" } }), old, true).map((c) => c.field),
    ).toEqual(["immutable"]);
    const secret = { metadata: { name: "s" }, type: "Opaque", data: {} };
    expect(
      validateObjectUpdate("Secret", { ...secret, type: "kubernetes.io/basic-auth" }, secret, true).map(
        (c) => `${c.field}: ${c.message}`,
      ),
    ).toEqual(['type: Invalid value: "kubernetes.io/basic-auth": field is immutable']);
    expect(
      validateObjectUpdate(
        "Secret",
        { ...secret, immutable: true, data: { a: "YQ==" } },
        { ...secret, immutable: true },
        true,
      ).map((c) => c.field),
    ).toEqual(["data"]);
  });
});

describe("Pods, Deployments and ReplicaSets", () => {
  const template = (labels: Obj) => ({
    metadata: { labels },
    spec: { containers: [{ name: "c", image: "i" }] },
  });

  it("needs spec.nodeName to be a DNS subdomain", () => {
    const pod = {
      metadata: { name: "p" },
      spec: { nodeName: "replace this with a node", containers: [{ name: "c", image: "i" }] },
    };
    expect(messages("Pod", pod)).toEqual([
      `spec.nodeName: Invalid value: "replace this with a node": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
    ]);
  });

  it("keeps an apps/v1 selector and matches it against the template, expressions included", () => {
    const d = (sel: Obj, labels: Obj): Obj => ({
      metadata: { name: "d" },
      spec: { selector: sel, template: template(labels) },
    });
    const old = d({ matchLabels: { app: "a" } }, { app: "a", v: "1" });
    const next = d({ matchLabels: { app: "a", v: "1" } }, { app: "a", v: "1" });
    expect(
      validateObjectUpdate("Deployment", next, old, true).map((c) => `${c.field}: ${c.message}`),
    ).toEqual(['spec.selector: Invalid value: {"matchLabels":{"app":"a","v":"1"}}: field is immutable']);
    expect(validateObjectUpdate("ReplicaSet", next, old, true).map((c) => c.field)).toEqual([
      "spec.selector",
    ]);
    const expr = { matchExpressions: [{ key: "tier", operator: "In", values: ["web"] }] };
    expect(fields("Deployment", d(expr, { tier: "db" }))).toEqual(["spec.template.metadata.labels"]);
    expect(check("Deployment", d(expr, { tier: "web" }))).toEqual([]);
    expect(fields("Deployment", d({}, { a: "b" }))).toEqual(["spec.selector"]);
    expect(fields("Deployment", d({ matchExpressions: [{ key: "a", operator: "Is" }] }, {}))).toEqual([
      "spec.selector.matchExpressions[0].operator",
    ]);
  });
});

describe("what lab and real manifests write is accepted", () => {
  const examples = readdirSync("examples/apps").map((f) => `examples/apps/${f}`);
  for (const file of examples) {
    it(`accepts ${file}`, () => {
      for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
        const o = doc.toJSON() as Obj & { kind: string };
        applyDefaults(o.kind, o);
        expect(check(o.kind, o)).toEqual([]);
      }
    });
  }

  it("accepts an upstream-shaped Deployment with probes, env, volumes, affinity and security context", () => {
    const d: Obj = {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "web", annotations: { "deployment.kubernetes.io/revision": "3" } },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: "web" } },
        strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: "25%", maxUnavailable: 0 } },
        template: {
          metadata: { labels: { app: "web" }, creationTimestamp: null },
          spec: {
            affinity: {
              nodeAffinity: {
                requiredDuringSchedulingIgnoredDuringExecution: {
                  nodeSelectorTerms: [
                    { matchFields: [{ key: "metadata.name", operator: "NotIn", values: ["n1"] }] },
                  ],
                },
              },
            },
            securityContext: { runAsUser: 1000, fsGroup: 2000 },
            volumes: [
              { name: "cfg", configMap: { name: "cfg", defaultMode: 420 } },
              { name: "tmp", emptyDir: { sizeLimit: "64Mi" } },
            ],
            containers: [
              {
                name: "web",
                image: "nginx:1.27",
                args: ["--port", "8080"],
                env: [
                  { name: "A", value: "1" },
                  { name: "POD", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
                  { name: "MEM", valueFrom: { resourceFieldRef: { resource: "limits.memory", divisor: 1 } } },
                ],
                ports: [{ containerPort: 8080, name: "http", protocol: "TCP" }],
                livenessProbe: { tcpSocket: { port: 8080 }, initialDelaySeconds: 5, failureThreshold: 3 },
                readinessProbe: { exec: { command: ["true"] } },
                volumeMounts: [{ name: "cfg", mountPath: "/etc/cfg", readOnly: true }],
                resources: { limits: { cpu: "500m", memory: "128Mi" } },
                securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
              },
            ],
          },
        },
      },
    };
    applyDefaults("Deployment", d);
    expect(check("Deployment", d)).toEqual([]);
  });
});

describe("the Invalid Status", () => {
  it("lists one cause bare and several in brackets, as apimachinery's aggregate does", () => {
    const causes = check("Deployment", { metadata: { name: "Web" }, spec: { replicas: -1 } });
    expect(invalid("Deployment", "Web", causes, "apps").message).toBe(
      `Deployment.apps "Web" is invalid: [${causes.map((c) => `${c.field}: ${c.message}`).join(", ")}]`,
    );
    expect(causes.map((c) => c.field)).toEqual([
      "metadata.name",
      "spec.replicas",
      "spec.selector",
      "spec.template.spec",
    ]);
  });
});

describe("Endpoints", () => {
  it("needs IP addresses, ports in range and names when there are several", () => {
    const ep = (subset: Obj): Obj => ({ metadata: { name: "web" }, subsets: [subset] });
    expect(
      check("Endpoints", ep({ addresses: [{ ip: "10.0.0.1" }], ports: [{ port: 80, protocol: "TCP" }] })),
    ).toEqual([]);
    expect(
      messages(
        "Endpoints",
        ep({
          addresses: [{ ip: "web-1" }, {}],
          ports: [{ port: 0 }, { name: "b", port: 1, protocol: "ICMP" }],
        }),
      ),
    ).toEqual([
      'subsets[0].addresses[0].ip: Invalid value: "web-1": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)',
      "subsets[0].addresses[1].ip: Required value",
      "subsets[0].ports[0].name: Required value",
      "subsets[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
      'subsets[0].ports[1].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"',
    ]);
  });
});
