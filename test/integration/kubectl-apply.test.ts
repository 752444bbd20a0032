/**
 * Server-side apply, managedFields, dryRun, OpenAPI/explain and field validation as kubectl 1.32
 * and Debian's python3-kubernetes see them, on real etcd + lab-server (one server for the file).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApiServer, type TestApiServer } from "../helpers/test-apiserver.ts";

/** kubectl's JSON output, walked by path in the assertions. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any shape kubectl prints
type Json = any;

let s: TestApiServer;
let dir: string;
const EXAMPLES = fileURLToPath(new URL("../../examples/apps/", import.meta.url));
const PYTHON_SCRIPT = fileURLToPath(new URL("../fixtures/python-dynamic-client.py", import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function kubectl(...args: string[]): Promise<Run> {
  const r = await execa("/usr/bin/kubectl", args, {
    env: { KUBECONFIG: s.kubeconfig, HOME: dir },
    reject: false,
    timeout: 60_000,
  });
  if (r.timedOut) throw new Error(`kubectl ${args.join(" ")} did not finish within 60 s`);
  return { code: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** kubectl that must succeed; its stdout. */
async function ok(...args: string[]): Promise<string> {
  const r = await kubectl(...args);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function file(name: string, text: string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, text);
  return p;
}

async function getJson(...args: string[]): Promise<Record<string, Json>> {
  return JSON.parse(await ok("get", ...args, "-o", "json", "--show-managed-fields")) as Record<string, Json>;
}

interface Entry {
  manager: string;
  operation: string;
  subresource?: string;
  fieldsV1: Record<string, Json>;
}

const managers = (o: Record<string, Json>): string[] =>
  (o.metadata.managedFields as Entry[]).map(
    (e) => `${e.manager}/${e.operation}${e.subresource ? `/${e.subresource}` : ""}`,
  );

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lab-kubectl-apply-"));
  s = await startTestApiServer();
});

afterAll(async () => {
  await s?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("server-side apply with kubectl 1.32", () => {
  it("applies examples/apps twice, conflicts with another manager in between, and --force-conflicts wins", async () => {
    const first = await ok("apply", "--server-side", "-f", EXAMPLES);
    expect(first).toContain("deployment.apps/sample serverside-applied");
    expect(first).toContain("service/sample serverside-applied");
    expect(await ok("apply", "--server-side", "-f", EXAMPLES)).toContain(
      "deployment.apps/sample serverside-applied",
    );

    let d = await getJson("deploy", "sample");
    expect(managers(d)).toEqual(["kubectl/Apply"]);
    const mine = (d.metadata.managedFields as Entry[])[0]!.fieldsV1;
    // containers merge by name, ports by containerPort+protocol, tolerations are atomic: upstream's list types
    const container = mine["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"sample"}'];
    expect(container["."]).toEqual({});
    expect(container["f:image"]).toEqual({});
    expect(container["f:ports"]['k:{"containerPort":8080,"protocol":"TCP"}']).toMatchObject({
      ".": {},
      "f:containerPort": {},
    });
    expect(mine["f:spec"]["f:template"]["f:spec"]["f:tolerations"]).toEqual({});
    expect(mine["f:spec"]["f:replicas"]).toEqual({});
    // defaults are nobody's, identity is never managed
    expect(container["f:terminationMessagePath"]).toBeUndefined();
    expect(mine["f:metadata"]["f:name"]).toBeUndefined();

    // another manager changes a field kubectl applied
    await ok(
      "patch",
      "deploy",
      "sample",
      "--field-manager=ops",
      "--type=merge",
      "-p",
      '{"spec":{"replicas":5}}',
    );
    d = await getJson("deploy", "sample");
    expect(managers(d)).toEqual(["kubectl/Apply", "ops/Update"]);
    const conflicted = await kubectl("apply", "--server-side", "-f", EXAMPLES);
    expect(conflicted.code).toBe(1);
    expect(conflicted.stderr).toContain(
      'Apply failed with 1 conflict: conflict with "ops" using apps/v1: .spec.replicas',
    );
    expect((await getJson("deploy", "sample")).spec.replicas).toBe(5);

    expect(await ok("apply", "--server-side", "--force-conflicts", "-f", EXAMPLES)).toContain(
      "deployment.apps/sample serverside-applied",
    );
    d = await getJson("deploy", "sample");
    expect(d.spec.replicas).toBe(3);
    // ops owned only replicas: forced away, its entry is gone
    expect(managers(d)).toEqual(["kubectl/Apply"]);
  });

  it("names kubectl-client-side-apply in the conflict of an SSA over a client-side apply; managedFields record both", async () => {
    const cm = await file(
      "cm.yaml",
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {a: "1"}\n',
    );
    const cm2 = await file(
      "cm2.yaml",
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {a: "2"}\n',
    );
    await ok("apply", "-f", cm);
    let o = await getJson("cm", "ssa");
    const csa = (o.metadata.managedFields as Entry[]).find((e) => e.manager === "kubectl-client-side-apply")!;
    expect(csa.operation).toBe("Update");
    expect(csa.fieldsV1["f:data"]).toEqual({ ".": {}, "f:a": {} });
    expect(csa.fieldsV1["f:metadata"]["f:annotations"]).toMatchObject({
      "f:kubectl.kubernetes.io/last-applied-configuration": {},
    });

    const r = await kubectl("apply", "--server-side", "--field-manager=other", "-f", cm2);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: .data.a',
    );
    // the same value is no conflict: the field becomes shared
    await ok("apply", "--server-side", "--field-manager=shared", "-f", cm);
    await ok("apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", cm2);
    o = await getJson("cm", "ssa");
    expect(o.data.a).toBe("2");
    const other = (o.metadata.managedFields as Entry[]).find((e) => e.manager === "other")!;
    expect(other).toMatchObject({ operation: "Apply", apiVersion: "v1", fieldsType: "FieldsV1" });
    expect(other.fieldsV1).toEqual({ "f:data": { "f:a": {} } });
    // forcing took data.a from both earlier owners
    expect(managers(o)).toEqual(["kubectl-client-side-apply/Update", "other/Apply"]);
    expect(JSON.stringify(o.metadata.managedFields)).not.toContain('"shared"');
  });

  it("removes fields a manager stops applying, but not those another manager also owns", async () => {
    const v1 = await file(
      "rm1.yaml",
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: rm, labels: {keep: "1", drop: "2", both: "3"}}\ndata: {a: "1", b: "2"}\n',
    );
    const v2 = await file(
      "rm2.yaml",
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: rm, labels: {keep: "1"}}\ndata: {a: "1"}\n',
    );
    await ok("apply", "--server-side", "-f", v1);
    await ok("label", "cm", "rm", "extra=4");
    const second = await file(
      "rm-second.yaml",
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: rm, labels: {both: "3"}}\n',
    );
    await ok("apply", "--server-side", "--field-manager=second", "-f", second);
    await ok("apply", "--server-side", "-f", v2);
    const o = await getJson("cm", "rm");
    expect(o.data).toEqual({ a: "1" });
    // `both` is applied by "second" too (the same value: shared, no conflict): it stays
    expect(o.metadata.labels).toEqual({ keep: "1", extra: "4", both: "3" });
  });

  it("merges map-lists by key across managers: containers by name, ports by containerPort+protocol", async () => {
    await ok("apply", "--server-side", "-f", join(EXAMPLES, "sample.yaml"));
    const sidecar = await file(
      "sidecar.yaml",
      [
        "apiVersion: apps/v1",
        "kind: Deployment",
        "metadata: {name: sample}",
        "spec:",
        "  template:",
        "    spec:",
        "      containers:",
        "      - name: sample",
        "        ports: [{containerPort: 8080, protocol: UDP, name: udp}]",
        "      - name: sidecar",
        "        image: lab/sample:latest",
        "",
      ].join("\n"),
    );
    await ok("apply", "--server-side", "--field-manager=mesh", "-f", sidecar);
    const d = await getJson("deploy", "sample");
    const containers = d.spec.template.spec.containers as {
      name: string;
      image: string;
      ports?: unknown[];
    }[];
    expect(containers.map((c) => c.name)).toEqual(["sample", "sidecar"]);
    expect(containers[0]!.image).toBe("lab/sample:latest");
    expect(containers[0]!.ports).toEqual([
      { containerPort: 8080, name: "http", protocol: "TCP" },
      { containerPort: 8080, name: "udp", protocol: "UDP" },
    ]);
    expect(managers(d)).toEqual(["kubectl/Apply", "mesh/Apply"]);
    // mesh stops applying: its sidecar and port go, kubectl's stay
    await ok(
      "apply",
      "--server-side",
      "--field-manager=mesh",
      "-f",
      await file("mesh-empty.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: sample}\n"),
    );
    const after = await getJson("deploy", "sample");
    expect((after.spec.template.spec.containers as { name: string }[]).map((c) => c.name)).toEqual([
      "sample",
    ]);
    expect(after.spec.template.spec.containers[0].ports).toEqual([
      { containerPort: 8080, name: "http", protocol: "TCP" },
    ]);
  });

  it("applies status through the status subresource, leaving spec alone", async () => {
    const st = await file(
      "status.yaml",
      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: sample}\nspec: {replicas: 9}\nstatus: {replicas: 7, observedGeneration: 1}\n",
    );
    await ok("apply", "--server-side", "--subresource=status", "--field-manager=ctrl", "-f", st);
    const d = await getJson("deploy", "sample");
    expect(d.status).toMatchObject({ replicas: 7, observedGeneration: 1 });
    expect(d.spec.replicas).toBe(3);
    const ctrl = (d.metadata.managedFields as Entry[]).find((e) => e.manager === "ctrl")!;
    expect(ctrl).toMatchObject({ operation: "Apply", subresource: "status" });
    expect(ctrl.fieldsV1).toEqual({ "f:status": { "f:observedGeneration": {}, "f:replicas": {} } });
  });
});

describe("dryRun=All with kubectl 1.32", () => {
  it("--dry-run=server answers as if stored for create, patch, apply and delete, and stores nothing", async () => {
    const out = JSON.parse(
      await ok(
        "create",
        "cm",
        "dry",
        "--from-literal=a=1",
        "--dry-run=server",
        "-o",
        "json",
        "--show-managed-fields",
      ),
    ) as Record<string, Json>;
    expect(out.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(out.metadata.managedFields[0].manager).toBe("kubectl-create");
    expect((await kubectl("get", "cm", "dry")).stderr).toContain('configmaps "dry" not found');

    await ok("create", "cm", "live", "--from-literal=a=1");
    const rv = (await getJson("cm", "live")).metadata.resourceVersion as string;
    const patched = JSON.parse(
      await ok("patch", "cm", "live", "--dry-run=server", "-p", '{"data":{"a":"9"}}', "-o", "json"),
    ) as Record<string, Json>;
    expect(patched.data.a).toBe("9");
    const applied = await file(
      "live.yaml",
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: live}\ndata: {a: "7"}\n',
    );
    expect(
      await ok(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "-f",
        applied,
        "-o",
        "jsonpath={.data.a}",
      ),
    ).toBe("7");
    expect(await ok("apply", "--dry-run=server", "-f", applied)).toContain("(server dry run)");
    expect(await ok("delete", "cm", "live", "--dry-run=server")).toContain("(server dry run)");
    expect(await ok("delete", "cm", "--all", "--dry-run=server")).toContain(
      'configmap "live" deleted (server dry run)',
    );
    const live = await getJson("cm", "live");
    expect(live.data.a).toBe("1");
    expect(live.metadata.resourceVersion).toBe(rv);
  });

  it("kubectl diff exits 1 on a difference and 0 on none", async () => {
    const same = await file(
      "diff-same.yaml",
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: difft}\ndata: {a: "1"}\n',
    );
    const changed = await file(
      "diff-changed.yaml",
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: difft}\ndata: {a: "2"}\n',
    );
    await ok("apply", "--server-side", "-f", same);
    expect((await kubectl("diff", "--server-side", "-f", same)).code).toBe(0);
    const d = await kubectl("diff", "--server-side", "-f", changed);
    expect(d.code).toBe(1);
    expect(d.stdout).toMatch(/-\s+a: "1"\n\+\s+a: "2"/);
    const cs = await kubectl("diff", "-f", changed);
    expect(cs.code).toBe(1);
    expect((await getJson("cm", "difft")).data.a).toBe("1");
  });
});

describe("OpenAPI, explain and field validation with kubectl 1.32", () => {
  it("kubectl explain works to any depth", async () => {
    const replicas = await ok("explain", "deployment.spec.replicas");
    expect(replicas).toContain("FIELD: replicas <integer>");
    expect(replicas).toContain("Number of desired pods.");
    const limits = await ok("explain", "deployment.spec.template.spec.containers.resources.limits");
    expect(limits).toContain("FIELD: limits <map[string]Quantity>");
    expect(limits).toContain("Limits describes the maximum amount of compute resources allowed.");
    expect(await ok("explain", "deployment.spec.strategy.rollingUpdate.maxSurge")).toContain(
      "FIELD: maxSurge <IntOrString>",
    );
    const ports = await ok("explain", "pods.spec.containers.ports");
    expect(ports).toMatch(/containerPort\s+<integer> -required-/);
    expect(await ok("explain", "leases.spec.holderIdentity")).toContain("holderIdentity <string>");
  });

  it("fieldValidation: Strict fails in upstream's words, Warn warns, Ignore ignores", async () => {
    const unknown = await file(
      "unknown.yaml",
      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: unk}\nspec:\n  foo: 1\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers: [{name: c, image: x, bar: 2}]\n",
    );
    const strict = await kubectl("apply", "-f", unknown);
    expect(strict.code).toBe(1);
    expect(strict.stderr).toContain(
      'strict decoding error: unknown field "spec.foo", unknown field "spec.template.spec.containers[0].bar"',
    );
    const ssa = await kubectl("apply", "--server-side", "-f", unknown);
    expect(ssa.stderr).toContain('strict decoding error: unknown field "spec.foo"');
    const warn = await kubectl("apply", "--validate=warn", "-f", unknown);
    expect(warn.code).toBe(0);
    expect(warn.stderr).toContain('Warning: unknown field "spec.foo"');
    await ok("delete", "deploy", "unk");
    const ignore = await kubectl("apply", "--validate=false", "-f", unknown);
    expect(ignore.code).toBe(0);
    expect(ignore.stderr).not.toContain("unknown field");

    const dup = await file(
      "dup.json",
      '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup"},"data":{"a":"1","a":"2"}}',
    );
    const raw = await kubectl(
      "create",
      "--raw",
      "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
      "-f",
      dup,
    );
    expect(raw.code).toBe(1);
    expect(raw.stderr).toContain('strict decoding error: duplicate field "data.a"');
  });

  it("an unserved kind fails with `no matches for kind` and the rest of the file is applied", async () => {
    const mixed = await file(
      "mixed.yaml",
      [
        "apiVersion: networking.k8s.io/v1",
        "kind: Ingress",
        "metadata: {name: web}",
        "spec:",
        "  rules:",
        "  - http:",
        "      paths:",
        "      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}",
        "---",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata: {name: mixed}",
        'data: {x: "1"}',
        "",
      ].join("\n"),
    );
    for (const args of [["apply"], ["apply", "--server-side"]]) {
      const r = await kubectl(...args, "-f", mixed);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('no matches for kind "Ingress" in version "networking.k8s.io/v1"');
      expect(r.stderr).not.toMatch(/openapi|wire-format/);
      expect(r.stdout).toMatch(/configmap\/mixed (created|serverside-applied|unchanged|configured)/);
    }
  });
});

describe("Debian's python3-kubernetes", () => {
  it("lists, watches, creates and server-side applies through the dynamic client", async () => {
    await ok("create", "namespace", "py");
    const r = await execa("/usr/bin/python3", [PYTHON_SCRIPT, s.kubeconfig, "py"], {
      reject: false,
      timeout: 90_000,
      env: { HOME: dir },
    });
    if (r.exitCode !== 0) throw new Error(`python3-kubernetes failed (${r.exitCode}): ${r.stderr}`);
    const out = JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, Json>;
    expect(out.list_rv).toBe(true);
    expect(out.created).toBe("py-created");
    expect(out.applied_managers).toEqual(["python/Apply"]);
    expect(out.conflict).toBe('Apply failed with 1 conflict: conflict with "python" using v1: .data.k');
    expect(out.forced).toBe("v2");
    expect(out.watched).toEqual([
      ["ADDED", "py-created"],
      ["ADDED", "py-applied"],
    ]);
  });
});
