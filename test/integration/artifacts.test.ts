import { beforeAll, describe, expect, it } from "vitest";
import { execa } from "execa";
import { copyFile, mkdtemp, readFile, rm, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildExecutable, executableAssets, nodeRuntime, renderLauncher } from "../../bootstrap/artifacts.ts";
import { sha256OfFile } from "../../lib/digest.ts";
import { freePort, startEtcd } from "../helpers/etcd.ts";
import { until } from "../helpers/until.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lab-artifacts-"));
  return () => rm(dir, { recursive: true, force: true });
});

describe("self-contained executables", () => {
  it("bundles an entry with its npm dependencies so it runs with only the Node runtime", async () => {
    const a = await buildExecutable({
      name: "tiny",
      entry: "test/fixtures/tiny-entry/main.ts",
      outDir: join(dir, "out"),
    });
    expect(a.files.map((f) => f.remote)).toEqual([
      "/opt/lab/lib/tiny.mjs",
      "/opt/lab/lib/tiny.cjs",
      "/opt/lab/bin/tiny",
    ]);
    // A target-like tree with no node_modules anywhere: the runtime copy, the loader and the bundle.
    const target = join(dir, "target");
    await mkdir(target);
    const runtime = await nodeRuntime();
    await copyFile(runtime.local, join(target, "node"));
    await copyFile(a.files[0]!.local, join(target, "tiny.mjs"));
    await copyFile(a.files[1]!.local, join(target, "tiny.cjs"));
    const run = () =>
      execa(join(target, "node"), [join(target, "tiny.mjs"), "lab", "--flag"], { cwd: target });
    const r = await run();
    expect(r.stdout).toContain("greeting: hello lab");
    expect(r.stdout).toContain("- --flag");
    expect(r.stdout).toContain(`proto: syntax = "proto3";`);
    for (const f of a.files) expect(f.sha256).toBe(await sha256OfFile(f.local));
    // The first run left V8's code cache beside the bundle, named by the bundle's hash; the next
    // run takes it (same output) and leaves it as it was.
    const cache = join(target, `.tiny-${a.files[1]!.sha256.slice(0, 16)}.v8cache`);
    const first = await readFile(cache);
    expect(first.length).toBeGreaterThan(0);
    expect((await run()).stdout).toBe(r.stdout);
    expect(await readFile(cache)).toEqual(first);
    expect(runtime.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(renderLauncher("tiny")).toContain('exec /opt/lab/bin/node /opt/lab/lib/tiny.mjs "$@"');
  });

  it("is reproducible: the same entry gives the same bytes (uploads are skipped on rerun)", async () => {
    const a = await buildExecutable({
      name: "tiny",
      entry: "test/fixtures/tiny-entry/main.ts",
      outDir: join(dir, "a"),
    });
    const b = await buildExecutable({
      name: "tiny",
      entry: "test/fixtures/tiny-entry/main.ts",
      outDir: join(dir, "b"),
    });
    expect(a.files.map((f) => f.sha256)).toEqual(b.files.map((f) => f.sha256));
  });

  it("lab-server's bundle starts in a target-like tree from its shipped files alone (etcd3 reads its .proto)", async () => {
    const a = await buildExecutable({
      name: "lab-server",
      entry: "controlplane/main.ts",
      outDir: join(dir, "server"),
      assets: await executableAssets("lab-server", join(dir, "server")),
    });
    // Lay out every shipped file under a fake /opt/lab, exactly where the bootstrap puts it.
    const root = join(dir, "root");
    for (const f of a.files) {
      const to = join(root, f.remote);
      await mkdir(join(to, ".."), { recursive: true });
      await copyFile(f.local, to);
    }
    expect(a.files.map((f) => f.remote)).toContain("/opt/lab/proto/rpc.proto");
    expect(a.files.map((f) => f.remote)).toEqual(
      expect.arrayContaining([
        "/opt/lab/lib/k8s-definitions.json",
        "/opt/lab/lib/openapi-docs/v2.pb",
        "/opt/lab/lib/openapi-docs/v3",
        "/opt/lab/lib/openapi-docs/v3~apis~apps~v1",
      ]),
    );
    const r = await execa(process.execPath, [join(root, "opt/lab/lib/lab-server.mjs"), "--help"], {
      cwd: root,
      reject: false,
    });
    expect(r.stderr).not.toMatch(/Error/);
    expect(r.stdout).toContain("--etcd-servers");

    // Started for real from the shipped files (standalone, over a real etcd): OpenAPI v2 and v3
    // and kubectl explain work, which need upstream's definitions shipped beside the bundle.
    const etcd = await startEtcd();
    const port = await freePort();
    const kubeconfig = join(dir, "bundle.kubeconfig");
    const server = execa(
      process.execPath,
      [
        join(root, "opt/lab/lib/lab-server.mjs"),
        "--etcd-servers",
        etcd.endpoint,
        "--listen",
        `127.0.0.1:${port}`,
        "--cert-dir",
        join(dir, "bundle-pki"),
        "--write-kubeconfig",
        kubeconfig,
      ],
      { cwd: root, reject: false, all: true },
    );
    const kubectl = (args: string[]) =>
      execa("/usr/bin/kubectl", ["--kubeconfig", kubeconfig, "--request-timeout=10s", ...args], {
        reject: false,
      });
    try {
      await until(
        "the bundled lab-server answers /readyz",
        async () => server.exitCode === null && (await kubectl(["get", "--raw", "/readyz"])).exitCode === 0,
        90_000,
        { everyMs: 500 },
      );
      const v2 = await kubectl(["get", "--raw", "/openapi/v2"]);
      expect(v2.stderr).toBe("");
      expect(v2.stdout).toContain("io.k8s.api.apps.v1.DeploymentSpec");
      const v3 = await kubectl(["get", "--raw", "/openapi/v3/apis/apps/v1"]);
      expect(v3.stdout).toContain("io.k8s.api.apps.v1.DeploymentSpec");
      // served from the documents rendered at build time, byte for byte (not rendered again)
      const shipped = await readFile(join(root, "opt/lab/lib/openapi-docs/v3~apis~apps~v1"), "utf8");
      expect(v3.stdout).toBe(shipped);
      const explain = await kubectl(["explain", "deployment.spec.strategy"]);
      expect(explain.stderr).toBe("");
      expect(explain.stdout).toContain("rollingUpdate");
    } finally {
      server.kill("SIGTERM");
      await server;
      await etcd.stop();
    }
  });

  it("says which entry is missing", async () => {
    await expect(buildExecutable({ name: "lab-server", entry: "nope/main.ts", outDir: dir })).rejects.toThrow(
      /cannot build lab-server: nope\/main.ts does not exist/,
    );
  });
});
