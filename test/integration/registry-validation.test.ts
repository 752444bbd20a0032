import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { identity, rawRequest } from "../helpers/raw-https.ts";
import { startTestApiServer, type TestApiServer } from "../helpers/test-apiserver.ts";

/**
 * Every write is validated before it reaches etcd: the findings of the hardening review, each
 * answered 422 Invalid as Kubernetes answers them, against real etcd and lab-server.
 */

const run = promisify(execFile);
let s: TestApiServer;
let node: { cert: string; key: string };

interface Answer {
  code: number;
  body: Record<string, unknown> & {
    message?: string;
    reason?: string;
    details?: { causes?: { field: string; reason: string; message: string }[] };
  };
}

async function call(
  method: string,
  path: string,
  body?: unknown,
  opts: { contentType?: string; as?: { cert: string; key: string } } = {},
): Promise<Answer> {
  const who = await identity(s, opts.as ?? s.admin);
  const data = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
  const r = await rawRequest(s.port, who, method, path, {
    body: data,
    headers: { "Content-Type": opts.contentType ?? "application/json" },
  });
  return { code: r.code, body: r.body ? JSON.parse(r.body) : {} };
}

async function kubectl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run("/usr/bin/kubectl", args, {
      env: { ...process.env, KUBECONFIG: s.kubeconfig },
      timeout: 30_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : 1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

const CM = "/api/v1/namespaces/default/configmaps";
const SECRETS = "/api/v1/namespaces/default/secrets";
const MERGE = { contentType: "application/merge-patch+json" };

function expectInvalid(a: Answer, message: string, field: string): void {
  expect(a.code).toBe(422);
  expect(a.body).toMatchObject({ kind: "Status", status: "Failure", reason: "Invalid", code: 422 });
  expect(a.body.message).toBe(message);
  expect(a.body.details?.causes?.map((c) => c.field)).toContain(field);
  for (const c of a.body.details?.causes ?? []) expect(c.reason).toMatch(/^FieldValue/);
}

beforeAll(async () => {
  s = await startTestApiServer();
  node = await s.pki.client("worker-1", "system:node:worker-1", ["system:nodes"]);
});

afterAll(async () => {
  await s?.stop();
});

describe("writes are validated before etcd", () => {
  it("refuses a numeric annotation, storing nothing", async () => {
    const a = await call("POST", CM, { metadata: { name: "num", annotations: { n: 5 } } });
    expectInvalid(
      a,
      'ConfigMap "num" is invalid: metadata.annotations: Invalid value: 5: the value of "n" must be a string',
      "metadata.annotations",
    );
    expect((await call("GET", `${CM}/num`)).code).toBe(404);
  });

  it("refuses finalizers: 5, and a ConfigMap with real finalizers stays deletable", async () => {
    const a = await call("POST", CM, { metadata: { name: "fin", finalizers: 5 } });
    expectInvalid(
      a,
      'ConfigMap "fin" is invalid: metadata.finalizers: Invalid value: 5: must be a list of strings',
      "metadata.finalizers",
    );
    expect((await call("POST", CM, { metadata: { name: "fin", finalizers: ["example.com/x"] } })).code).toBe(
      201,
    );
    const patched = await call("PATCH", `${CM}/fin`, { metadata: { finalizers: 5 } }, MERGE);
    expect(patched.code).toBe(422);
    expect((await call("DELETE", `${CM}/fin`)).code).toBe(200);
    expect((await call("PATCH", `${CM}/fin`, { metadata: { finalizers: null } }, MERGE)).code).toBe(200);
    expect((await call("GET", `${CM}/fin`)).code).toBe(404);
  });

  it("answers 422 for a 1.6 MiB ConfigMap", async () => {
    const a = await call("POST", CM, {
      metadata: { name: "big" },
      data: { a: "x".repeat(1.6 * 1024 * 1024) },
    });
    expectInvalid(a, 'ConfigMap "big" is invalid: []: Too long: must have at most 1048576 bytes', "[]");
    expect((await call("GET", `${CM}/big`)).code).toBe(404);
  });

  it("refuses Secret data that is not base64 without echoing it", async () => {
    const a = await call("POST", SECRETS, { metadata: { name: "s64" }, data: { password: "hunter2!" } });
    expectInvalid(
      a,
      'Secret "s64" is invalid: data[password]: Invalid value: "<secret contents redacted>": illegal base64 data at input byte 7',
      "data[password]",
    );
    expect(JSON.stringify(a.body)).not.toContain("hunter2");
  });

  it("merges stringData into data, and keeps a Secret's type", async () => {
    const created = await call("POST", SECRETS, {
      metadata: { name: "typed" },
      stringData: { user: "admin" },
    });
    expect(created.code).toBe(201);
    expect(created.body).toMatchObject({
      type: "Opaque",
      data: { user: Buffer.from("admin").toString("base64") },
    });
    expect(created.body.stringData).toBeUndefined();
    const a = await call("PUT", `${SECRETS}/typed`, {
      metadata: { name: "typed" },
      type: "kubernetes.io/basic-auth",
      data: { username: "YQ==" },
    });
    expectInvalid(
      a,
      'Secret "typed" is invalid: type: Invalid value: "kubernetes.io/basic-auth": field is immutable',
      "type",
    );
    expect((await call("GET", `${SECRETS}/typed`)).body.type).toBe("Opaque");
  });

  it("keeps an immutable ConfigMap's data", async () => {
    expect(
      (await call("POST", CM, { metadata: { name: "frozen" }, immutable: true, data: { k: "v" } })).code,
    ).toBe(201);
    const a = await call("PATCH", `${CM}/frozen`, { data: { k: "w" } }, MERGE);
    expectInvalid(
      a,
      'ConfigMap "frozen" is invalid: data: Forbidden: field is immutable when `immutable` is set',
      "data",
    );
    expect((await call("GET", `${CM}/frozen`)).body.data).toEqual({ k: "v" });
  });

  it("keeps a Deployment's selector (kubectl apply prints the error)", async () => {
    const manifest = (sel: string): string => `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {${sel}}}
  template:
    metadata: {labels: {app: web, tier: front}}
    spec: {containers: [{name: web, image: nginx:1.27}]}
`;
    const f = join(s.pki.dir, "web.yaml");
    await writeFile(f, manifest("app: web"));
    expect((await kubectl("apply", "-f", f)).code).toBe(0);
    await writeFile(f, manifest("app: web, tier: front"));
    const out = await kubectl("apply", "-f", f);
    expect(out.code).not.toBe(0);
    expect(out.stderr).toContain('The Deployment "web" is invalid: spec.selector: Invalid value:');
    expect(out.stderr).toContain("field is immutable");
    const stored = await call("GET", "/apis/apps/v1/namespaces/default/deployments/web");
    expect(stored.body.spec).toMatchObject({ selector: { matchLabels: { app: "web" } } });
  });

  it("refuses a Node status PATCH with an object kubeletVersion, and `kubectl get nodes` still works", async () => {
    const created = await call(
      "POST",
      "/api/v1/nodes",
      { metadata: { name: "worker-1" }, status: { nodeInfo: { kubeletVersion: "v1.32.0" } } },
      { as: node },
    );
    expect(created.code).toBe(201);
    const a = await call(
      "PATCH",
      "/api/v1/nodes/worker-1/status",
      { status: { nodeInfo: { kubeletVersion: { toString: 1 } } } },
      { ...MERGE, as: node },
    );
    expectInvalid(
      a,
      'Node "worker-1" is invalid: status.nodeInfo.kubeletVersion: Invalid value: {"toString":1}: must be of type string',
      "status.nodeInfo.kubeletVersion",
    );
    const conditions = await call(
      "PATCH",
      "/api/v1/nodes/worker-1/status",
      { status: { conditions: [{ type: "Ready", status: true }] } },
      { ...MERGE, as: node },
    );
    expect(conditions.code).toBe(422);
    const get = await kubectl("get", "nodes");
    expect(get.code).toBe(0);
    expect(get.stdout).toMatch(/worker-1\s+\S+\s+\S+\s+\S+\s+v1\.32\.0/);
    expect((await call("GET", "/api/v1/nodes")).code).toBe(200);
  });

  it("refuses an Event whose involvedObject.name is an object", async () => {
    const a = await call("POST", "/api/v1/namespaces/default/events", {
      metadata: { name: "ev1" },
      involvedObject: { kind: "Pod", name: { x: 1 }, namespace: "default" },
      reason: "Test",
      message: "m",
    });
    expectInvalid(
      a,
      'Event "ev1" is invalid: involvedObject.name: Invalid value: {"x":1}: must be of type string',
      "involvedObject.name",
    );
    const watch = await call(
      "GET",
      "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dx",
    );
    expect(watch.code).toBe(200);
  });

  it("refuses a pod whose nodeName is not a DNS subdomain (kubectl apply prints `is invalid`)", async () => {
    const f = join(s.pki.dir, "pod.yaml");
    await writeFile(
      f,
      `apiVersion: v1
kind: Pod
metadata: {name: placed}
spec:
  nodeName: replace this with a node
  containers: [{name: c, image: busybox}]
`,
    );
    const out = await kubectl("apply", "-f", f);
    expect(out.code).not.toBe(0);
    expect(out.stderr).toContain(
      'The Pod "placed" is invalid: spec.nodeName: Invalid value: "replace this with a node"',
    );
    const a = await call("POST", "/api/v1/namespaces/default/pods", {
      metadata: { name: "placed" },
      spec: { nodeName: "replace this with a node", containers: [{ name: "c", image: "busybox" }] },
    });
    expect(a.code).toBe(422);
    expect(a.body.details?.causes?.[0]).toMatchObject({
      field: "spec.nodeName",
      reason: "FieldValueInvalid",
    });
    expect((await call("GET", "/api/v1/namespaces/default/pods/placed")).code).toBe(404);
  });
});
