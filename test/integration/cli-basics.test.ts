import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hasStackTrace, lockingProcess, runLab } from "../helpers/cli.ts";
import { EVEN_MASTERS_LINES } from "../helpers/topology-text.ts";

let dir: string;
let env: Record<string, string>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lab-cli-"));
  env = { LAB_HOME: join(dir, "home") };
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("lab CLI through a real process", () => {
  it("--help lists the commands and the exit codes", async () => {
    const r = await runLab(["--help"], { env });
    expect(r.exitCode).toBe(0);
    for (const cmd of ["validate", "plan", "schema", "doctor"]) expect(r.stdout).toContain(cmd);
    expect(r.stdout).toMatch(/Exit codes: 0 ok, 1 bad input/);
  });

  it("every command has --help", async () => {
    for (const cmd of [
      "validate",
      "plan",
      "schema",
      "doctor",
      "up",
      "down",
      "stop",
      "start",
      "status",
      "ssh",
      "logs",
      "image",
    ]) {
      const r = await runLab([cmd, "--help"], { env });
      expect(r.exitCode, cmd).toBe(0);
      expect(r.stdout, cmd).toMatch(/^Usage: lab /);
    }
  });

  it("validate reports every problem with file:line:column and exits 1, without a stack trace", async () => {
    const file = join(dir, "bad.yaml");
    await writeFile(file, [...EVEN_MASTERS_LINES, "  resources:", "    memory: 2GB", ""].join("\n"));
    const r = await runLab(["validate", "-f", file], { env, cwd: dir });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(
      "bad.yaml:7:5 spec.masters.count: must be 1, 3 or 5 (got 2): an even number of etcd members tolerates no more failures than one fewer",
    );
    expect(r.stderr).toMatch(/bad\.yaml:9:5 spec\.resources\.memory: "2GB" is not a size/);
    expect(r.stderr).toMatch(/2 problems found/);
    expect(hasStackTrace(r.stderr)).toBe(false);
  });

  it("validate --json gives the problems as data", async () => {
    const file = join(dir, "bad2.yaml");
    await writeFile(
      file,
      "apiVersion: lab/v1alpha1\nkind: Lab\nmetadata:\n  name: demo\nspec:\n  workrs: {}\n",
    );
    const r = await runLab(["--json", "validate", "-f", file], { env, cwd: dir });
    expect(r.exitCode).toBe(1);
    const body = JSON.parse(r.stdout) as {
      error: { code: string; problems: { path: string; line: number; fix: string }[] };
    };
    expect(body.error.code).toBe("INVALID_TOPOLOGY");
    expect(body.error.problems).toEqual([
      expect.objectContaining({ path: "spec.workrs", line: 6, column: 3, fix: 'did you mean "workers"?' }),
    ]);
  });

  it("validate uses ./lab.yaml, then the built-in default", async () => {
    const empty = join(dir, "empty");
    await (await import("node:fs/promises")).mkdir(empty);
    const def = await runLab(["validate"], { env, cwd: empty });
    expect(def).toMatchObject({ exitCode: 0 });
    expect(def.stdout).toContain('(built-in default): valid (lab "default")');
    await writeFile(
      join(empty, "lab.yaml"),
      "apiVersion: lab/v1alpha1\nkind: Lab\nmetadata:\n  name: here\n",
    );
    const local = await runLab(["validate"], { env, cwd: empty });
    expect(local.stdout).toContain('lab.yaml: valid (lab "here")');
  });

  it("a missing file is one clear line naming the flag, exit 1", async () => {
    const r = await runLab(["validate", "-f", "/nonexistent/lab.yaml"], { env });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/cannot read topology file \/nonexistent\/lab\.yaml: ENOENT .*-f/);
  });

  it("start and stop of a lab that was never created: one line naming `lab up`, exit 1, no state made", async () => {
    for (const cmd of ["start", "stop"]) {
      const r = await runLab([cmd, "nolab"], { env, cwd: dir });
      expect(r.exitCode, cmd).toBe(1);
      expect(r.stderr, cmd).toContain(`lab nolab was never created`);
      expect(r.stderr, cmd).toContain("`lab up` creates it");
      expect(hasStackTrace(r.stderr)).toBe(false);
    }
    const j = await runLab(["--json", "start", "nolab"], { env, cwd: dir });
    expect(JSON.parse(j.stdout || j.stderr)).toMatchObject({ error: { code: "LAB_NOT_CREATED" } });
    expect(existsSync(join(dir, "home", "labs", "nolab"))).toBe(false);
    const st = await runLab(["--json", "status", "nolab"], { env, cwd: dir });
    expect(JSON.parse(st.stdout)).toMatchObject({ lab: "nolab", exists: false, state: "missing" });
  });

  it("plan --json is the deterministic plan", async () => {
    const a = await runLab(["--json", "plan", "-f", "examples/default.yaml"], { env });
    const b = await runLab(["--json", "plan", "-f", "examples/default.yaml"], { env });
    expect(a.exitCode).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    const p = JSON.parse(a.stdout) as {
      lab: string;
      nodes: { name: string; address: string; mac: string; podCIDR: string }[];
      network: { vip: string };
    };
    expect(p.lab).toBe("default");
    expect(p.nodes).toHaveLength(5);
    expect(p.network.vip).toMatch(/^10\.20[0-7]\.\d+\.10$/);
    const text = await runLab(["plan", "-f", "examples/default.yaml"], { env });
    expect(text.stdout).toMatch(/NODE\s+ROLE\s+ADDRESS\s+MAC/);
    expect(text.stdout).toContain("worker-2");
  });

  it("schema prints a JSON Schema", async () => {
    const r = await runLab(["schema"], { env });
    expect(r.exitCode).toBe(0);
    const s = JSON.parse(r.stdout) as { $schema: string; properties: Record<string, unknown> };
    expect(s.$schema).toMatch(/json-schema/);
    expect(Object.keys(s.properties)).toEqual(
      expect.arrayContaining(["apiVersion", "kind", "metadata", "spec"]),
    );
  });

  it("unknown commands and flags exit 1 with a hint", async () => {
    const r = await runLab(["frobnicate"], { env });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/unknown command 'frobnicate'/);
    const f = await runLab(["plan", "--bogus"], { env });
    expect(f.exitCode).toBe(1);
    expect(f.stderr).toMatch(/unknown option '--bogus'/);
    const g = await runLab(["doctor", "--group", "nope"], { env });
    expect(g.exitCode).toBe(1);
    expect(g.stderr).toMatch(/--group: unknown group "nope".*lab, libvirt, test/);
  });

  it("doctor --json lists each tool with its Debian package", async () => {
    const r = await runLab(["--json", "doctor"], { env });
    const body = JSON.parse(r.stdout) as {
      ok: boolean;
      tools: { command: string; pkg: string; found: string | null }[];
    };
    expect(r.exitCode).toBe(body.ok ? 0 : 2);
    expect(body.tools.find((t) => t.command === "qemu-img")).toMatchObject({ pkg: "qemu-utils" });
  });

  it("a second mutating command on a locked lab exits 3 and names the holder", async () => {
    const holder = lockingProcess("busy", env.LAB_HOME!, "up", "hold");
    try {
      await new Promise<void>((resolve) => holder.stdout!.once("data", () => resolve()));
      const r = await runLab(["down", "busy"], { env });
      expect(r.exitCode).toBe(3);
      expect(r.stderr).toMatch(new RegExp(`lab "busy" is locked by \`up\` \\(pid ${holder.pid} on `));
      expect(hasStackTrace(r.stderr)).toBe(false);
      const j = await runLab(["--json", "down", "busy"], { env });
      expect(j.exitCode).toBe(3);
      expect(JSON.parse(j.stdout)).toMatchObject({ error: { code: "LAB_LOCKED" } });
    } finally {
      holder.stdin!.write("x");
      await holder;
    }
  });
});
