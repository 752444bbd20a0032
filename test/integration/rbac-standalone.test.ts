/**
 * Workload identity in the lab-server bin as a user starts it (standalone, --cert-dir): the
 * service-account key made once in DIR/sa.key, the controller manager's default ServiceAccount,
 * kube-root-ca.crt and ClusterRole aggregation running in-process, and a token from before a
 * restart still accepted after it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { afterAll, beforeAll, expect, it } from "vitest";
import { freePort, startEtcd, type TestEtcd } from "../helpers/etcd.ts";
import { until } from "../helpers/until.ts";

const SERVER_BIN = fileURLToPath(new URL("../../bin/lab-server.js", import.meta.url));

let etcd: TestEtcd;
let dir: string;
const procs: ChildProcess[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
  dir = await mkdtemp(join(tmpdir(), "lab-rbac-standalone-"));
});

afterAll(async () => {
  for (const p of procs) await stopProc(p);
  await etcd?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function stopProc(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once("exit", r));
  p.kill("SIGTERM");
  const t = setTimeout(() => p.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(t);
}

function kubectl(kubeconfig: string, ...args: string[]) {
  return execa("/usr/bin/kubectl", ["--kubeconfig", kubeconfig, "--request-timeout=10s", ...args], {
    reject: false,
    env: { HOME: dir },
  });
}

async function start(port: number, kubeconfig: string): Promise<{ proc: ChildProcess; log: () => string }> {
  const proc = spawn(
    SERVER_BIN,
    ["--etcd-servers", etcd.endpoint, "--listen", `127.0.0.1:${port}`, "--cert-dir", join(dir, "pki")].concat(
      ["--write-kubeconfig", kubeconfig],
    ),
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  procs.push(proc);
  let out = "";
  proc.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  await until(
    `lab-server on ${port} to answer /readyz`,
    async () => {
      if (proc.exitCode !== null) throw new Error(`lab-server exited ${proc.exitCode}: ${out}`);
      await stat(kubeconfig);
      return (await kubectl(kubeconfig, "get", "--raw", "/readyz")).exitCode === 0;
    },
    90_000,
    { everyMs: 500, context: () => out },
  );
  return { proc, log: () => out };
}

async function tokenKubeconfig(name: string, server: string, token: string): Promise<string> {
  const file = join(dir, name);
  await writeFile(
    file,
    [
      "apiVersion: v1",
      "kind: Config",
      `clusters: [{name: lab, cluster: {server: "${server}", certificate-authority: "${join(dir, "pki", "ca.crt")}"}}]`,
      `users: [{name: sa, user: {token: "${token}"}}]`,
      "contexts: [{name: lab, context: {cluster: lab, user: sa, namespace: default}}]",
      "current-context: lab",
      "",
    ].join("\n"),
  );
  return file;
}

it("keeps the service-account key across restarts, and runs the identity controllers in-process", async () => {
  const port = await freePort();
  const kc = join(dir, "kubeconfig");
  const first = await start(port, kc);
  expect(first.log()).toContain(`service-account signing key created in ${join(dir, "pki", "sa.key")}`);
  expect((await stat(join(dir, "pki", "sa.key"))).mode & 0o777).toBe(0o600);
  await until(
    "the controller manager to create default/default",
    async () => (await kubectl(kc, "get", "sa", "default", "-n", "default")).exitCode === 0,
    60_000,
  );
  const ca = await kubectl(
    kc,
    "get",
    "configmap",
    "kube-root-ca.crt",
    "-n",
    "kube-system",
    "-o",
    "jsonpath={.data.ca\\.crt}",
  );
  expect(ca.stdout).toBe(await readFile(join(dir, "pki", "ca.crt"), "utf8"));
  await until(
    "the aggregation controller to fill view's rules",
    async () =>
      (
        await kubectl(kc, "get", "clusterrole", "view", "-o", "jsonpath={.rules[*].resources}")
      ).stdout.includes("pods"),
    60_000,
  );
  const made = await kubectl(kc, "create", "token", "default", "--duration=1h");
  expect(made.exitCode, made.stderr).toBe(0);
  const token = made.stdout.trim();
  const tkc = await tokenKubeconfig("sa.kubeconfig", `https://127.0.0.1:${port}`, token);
  const who = await kubectl(tkc, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}");
  expect(who.stdout).toBe("system:serviceaccount:default:default");
  await stopProc(first.proc);

  const port2 = await freePort();
  const second = await start(port2, join(dir, "kubeconfig-2"));
  expect(second.log()).not.toContain("service-account signing key created");
  const again = await kubectl(
    await tokenKubeconfig("sa-2.kubeconfig", `https://127.0.0.1:${port2}`, token),
    "auth",
    "whoami",
    "-o",
    "jsonpath={.status.userInfo.username}",
  );
  expect(again.exitCode, again.stderr).toBe(0);
  expect(again.stdout).toBe("system:serviceaccount:default:default");
  const forged = await kubectl(
    await tokenKubeconfig("bad.kubeconfig", `https://127.0.0.1:${port2}`, `${token}x`),
    "get",
    "pods",
  );
  expect(forged.exitCode).not.toBe(0);
  expect(forged.stderr).toContain("error: You must be logged in to the server");
  await stopProc(second.proc);
}, 240_000);
