/**
 * lab-server standalone, started as a user would: the `lab-server` bin (bin/lab-server.js) with
 * --listen, --cert-dir (an empty temp dir) and --write-kubeconfig, over a real etcd. The machine's
 * kubectl with the written kubeconfig lists namespaces; a second start reuses every certificate
 * (same CA fingerprint, files unchanged) so the first kubeconfig still works; `issue-node-cert`
 * writes a kubeconfig that authenticates as system:node:NAME; bad flag combinations exit 1 with the
 * flag named and no stack trace.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, expect, it } from "vitest";
import { fingerprint } from "../../controlplane/standalone.ts";
import { hasStackTrace } from "../helpers/cli.ts";
import { freePort, startEtcd, type TestEtcd } from "../helpers/etcd.ts";
import { SERVER_BIN, stopProcess } from "../helpers/hollow-cluster.ts";

const KUBECTL = "/usr/bin/kubectl";

let etcd: TestEtcd;
let dir: string;
const procs: ChildProcess[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
  dir = await mkdtemp(join(tmpdir(), "lab-standalone-"));
});

afterAll(async () => {
  for (const p of procs) await stopProcess(p);
  await etcd?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function kubectl(kubeconfig: string, args: string[]) {
  return execa(KUBECTL, ["--kubeconfig", kubeconfig, "--request-timeout=10s", ...args], { reject: false });
}

/** Starts the bin; resolves once kubectl answers /readyz with the written kubeconfig. */
async function startStandalone(
  port: number,
  kubeconfig: string,
): Promise<{ proc: ChildProcess; log: () => string }> {
  const proc = spawn(
    SERVER_BIN,
    [
      "--etcd-servers",
      etcd.endpoint,
      "--listen",
      `127.0.0.1:${port}`,
      "--cert-dir",
      join(dir, "pki"),
      "--write-kubeconfig",
      kubeconfig,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  procs.push(proc);
  let out = "";
  proc.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`lab-server exited ${proc.exitCode}: ${out}`);
    const ok = await stat(kubeconfig).then(
      async () => (await kubectl(kubeconfig, ["get", "--raw", "/readyz"])).exitCode === 0,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`lab-server not ready within 90 s: ${out}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  return { proc, log: () => out };
}

async function certFiles(): Promise<Record<string, string>> {
  const pki = join(dir, "pki");
  const out: Record<string, string> = {};
  for (const f of (await readdir(pki)).filter((f) => /\.(crt|key)$/.test(f)).sort())
    out[f] = await readFile(join(pki, f), "utf8");
  return out;
}

it("creates its certificates and an admin kubeconfig kubectl uses; a second start reuses them", async () => {
  const port = await freePort();
  const kc1 = join(dir, "kubeconfig");
  const first = await startStandalone(port, kc1);
  expect(first.log()).toContain(`listening on https://127.0.0.1:${port}`);
  expect(first.log()).toContain(`admin kubeconfig written to ${kc1}`);
  expect((await stat(kc1)).mode & 0o777).toBe(0o600);
  const kcText = await readFile(kc1, "utf8");
  expect(kcText).toContain("certificate-authority-data:");
  expect(kcText).toContain("client-key-data:");

  const ns = await kubectl(kc1, ["get", "namespaces", "-o", "name"]);
  expect(ns.exitCode, ns.stderr).toBe(0);
  expect(ns.stdout.split("\n")).toEqual(
    expect.arrayContaining(["namespace/default", "namespace/kube-system", "namespace/kube-node-lease"]),
  );
  const files = await certFiles();
  for (const f of ["ca.crt", "apiserver.crt", "admin.crt", "apiserver-kubelet-client.crt"])
    expect(Object.keys(files)).toContain(f);
  for (const f of Object.keys(files).filter((f) => f.endsWith(".key")))
    expect((await stat(join(dir, "pki", f))).mode & 0o777, f).toBe(0o600);
  const serving = await execa("openssl", [
    "x509",
    "-noout",
    "-ext",
    "subjectAltName",
    "-in",
    join(dir, "pki", "apiserver.crt"),
  ]);
  expect(serving.stdout).toContain("IP Address:127.0.0.1");
  expect(serving.stdout).toContain("DNS:localhost");
  const admin = await execa("openssl", ["x509", "-noout", "-subject", "-in", join(dir, "pki", "admin.crt")]);
  expect(admin.stdout).toMatch(/O\s*=\s*system:masters/);
  const ca1 = fingerprint(files["ca.crt"]!);
  await stopProcess(first.proc);
  expect(first.proc.exitCode).toBe(0);

  // Second start on the same directory (another port): nothing regenerated.
  const port2 = await freePort();
  const kc2 = join(dir, "kubeconfig-2");
  const second = await startStandalone(port2, kc2);
  expect(second.log()).toContain(`reused (CA ${ca1})`);
  const again = await certFiles();
  expect(fingerprint(again["ca.crt"]!)).toBe(ca1);
  expect(again).toEqual(files);
  // the first kubeconfig's credentials are still good (same CA, same admin certificate)
  const sameCreds = await kubectl(kc1, ["--server", `https://127.0.0.1:${port2}`, "get", "ns", "default"]);
  expect(sameCreds.exitCode, sameCreds.stderr).toBe(0);
  expect((await kubectl(kc2, ["get", "ns", "kube-system"])).exitCode).toBe(0);

  // A node's kubeconfig: authenticates as system:node:NAME (and is no admin).
  const nodeKc = join(dir, "node-n1.kubeconfig");
  const issued = await execa(
    SERVER_BIN,
    ["issue-node-cert", "n1", "--cert-dir", join(dir, "pki"), "--out", nodeKc],
    {
      reject: false,
    },
  );
  expect(issued.exitCode, issued.stderr).toBe(0);
  expect((await stat(nodeKc)).mode & 0o777).toBe(0o600);
  const nodeCert = await execa("openssl", [
    "x509",
    "-noout",
    "-subject",
    "-in",
    join(dir, "pki", "nodes", "n1.crt"),
  ]);
  expect(nodeCert.stdout).toMatch(/O\s*=\s*system:nodes/);
  expect(nodeCert.stdout).toMatch(/CN\s*=\s*system:node:n1/);
  const denied = await kubectl(nodeKc, ["create", "namespace", "not-for-nodes"]);
  expect(denied.exitCode).not.toBe(0);
  expect(denied.stderr).toContain('User "system:node:n1" cannot create resource "namespaces"');
  const nodeRead = await kubectl(nodeKc, ["get", "nodes"]);
  expect(nodeRead.exitCode, nodeRead.stderr).toBe(0);
  expect(await certFiles()).toMatchObject(files); // issuing a node certificate leaves the rest alone
});

it("rejects contradictory flags with the flag named, exit 1, no stack trace", async () => {
  const cases: [string[], string][] = [
    [["--cert-dir", join(dir, "x"), "--tls-cert-file", "/nonexistent"], "--tls-cert-file cannot be combined"],
    [["--listen", "127.0.0.1:1", "--secure-port", "7"], "--listen and --secure-port"],
    [["--listen", "nonsense"], '--listen must be HOST:PORT (e.g. 127.0.0.1:6443), got "nonsense"'],
    [["--write-kubeconfig", join(dir, "k")], "--write-kubeconfig needs --cert-dir"],
    [[], "--tls-cert-file is required (or give --cert-dir DIR"],
  ];
  for (const [args, message] of cases) {
    const r = await execa(SERVER_BIN, ["--etcd-servers", etcd.endpoint, ...args], {
      reject: false,
      timeout: 60_000,
    });
    expect(r.exitCode, args.join(" ")).toBe(1);
    expect(r.stderr).toContain(message);
    expect(hasStackTrace(r.stderr)).toBe(false);
  }
  const badNode = await execa(SERVER_BIN, ["issue-node-cert", "Bad_Name", "--cert-dir", join(dir, "pki")], {
    reject: false,
  });
  expect(badNode.exitCode).toBe(1);
  expect(badNode.stderr).toContain('node name "Bad_Name" is not a valid DNS subdomain');
});
