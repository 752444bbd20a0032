/**
 * CPU of an idle control plane on the host: real etcd member(s), lab-server process(es) with the
 * leader-elected scheduler and controllers, and one lab-agent against a real containerd in a netns.
 * Nothing is created; after SETTLE_S the CPU seconds (utime+stime from /proc/PID/stat, plus
 * reaped children such as nft/ip runs) of every process are taken over MEASURE_S, and printed as
 * % of one core, with lab-server:etcd side by side. A TCG guest is ~14x slower: multiply.
 * CPU time inflates when the host is busy: compare two trees by running both at the same time.
 *
 * Run (root): npx tsx bench/idle-cpu.ts
 *   MASTERS=3      three etcd members and three lab-servers (followers of both leases)
 *   AGENTS=0       no lab-agent (no containerd needed)
 *   PODS=N         N pods (sample image, readiness probe) bound to the agent's node
 *   READYZ=0       without keepalived's /readyz check (every 2 s) against each lab-server
 *   MEASURE_S=60 SETTLE_S=20
 *   CPU_PROF=DIR   lab-server(s) and agent write V8 CPU profiles there on exit
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LabClient } from "../api/client.ts";
import { SAMPLE_IMAGE } from "../images/oci/build.ts";
import { CHECK_INTERVAL_S, renderReadyzCheck } from "../templates/keepalived.ts";
import { freePort } from "../test/helpers/etcd.ts";
import { kubeconfigYaml } from "../test/helpers/test-apiserver.ts";
import { labServerArgv } from "../test/helpers/fault-load.ts";
import { makeTestPki } from "../test/helpers/test-pki.ts";
import { startTestNode, type TestNode } from "../test/integration/agent-node.ts";
import { sleep } from "../lib/sleep.ts";

const MASTERS = Number(process.env["MASTERS"] ?? 1);
const AGENTS = Number(process.env["AGENTS"] ?? 1);
const PODS = Number(process.env["PODS"] ?? 0);
const SETTLE_S = Number(process.env["SETTLE_S"] ?? 20);
const MEASURE_S = Number(process.env["MEASURE_S"] ?? 60);
const CPU_PROF = process.env["CPU_PROF"];
const READYZ = process.env["READYZ"] !== "0";
const TICKS = 100; // USER_HZ on Linux

interface Proc {
  name: string;
  proc: ChildProcess;
  log: string[];
}
const procs: Proc[] = [];

function start(name: string, cmd: string, args: string[]): Proc {
  const proc = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
  const p: Proc = { name, proc, log: [] };
  proc.stderr?.on("data", (d: Buffer) => {
    p.log.push(...d.toString().trim().split("\n"));
    if (p.log.length > 200) p.log.splice(0, p.log.length - 200);
  });
  procs.push(p);
  return p;
}

/** CPU seconds of a process itself and of its reaped children. */
async function cpuSeconds(pid: number): Promise<{ self: number; children: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields after ")": state(3) ... utime(14) stime(15) cutime(16) cstime(17), 1-based in proc(5)
  const n = (i: number): number => Number(f[i - 3]);
  return { self: (n(14) + n(15)) / TICKS, children: (n(16) + n(17)) / TICKS };
}

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const nodeArgs = (prof: string): string[] =>
  CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${CPU_PROF}`, `--cpu-prof-name=${prof}.cpuprofile`] : [];

const dir = await mkdtemp(join(tmpdir(), "lab-idle-"));
const pki = await makeTestPki();
let node: TestNode | undefined;
const clients: LabClient[] = [];
try {
  // etcd: MASTERS members on loopback, plain HTTP like the integration tests
  const ports = await Promise.all(
    Array.from({ length: MASTERS }, async () => ({ client: await freePort(), peer: await freePort() })),
  );
  const initial = ports.map((p, i) => `m${i}=http://127.0.0.1:${p.peer}`).join(",");
  ports.forEach((p, i) =>
    start(`etcd-${i}`, "/usr/bin/etcd", [
      `--name=m${i}`,
      `--data-dir=${join(dir, `etcd-${i}`)}`,
      `--listen-client-urls=http://127.0.0.1:${p.client}`,
      `--advertise-client-urls=http://127.0.0.1:${p.client}`,
      `--listen-peer-urls=http://127.0.0.1:${p.peer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${p.peer}`,
      `--initial-cluster=${initial}`,
      // as the bootstrap runs them (templates/etcd.ts)
      "--heartbeat-interval=1000",
      "--election-timeout=10000",
      "--snapshot-count=10000",
      "--logger=zap",
      "--log-level=warn",
    ]),
  );
  const etcdServers = ports.map((p) => `http://127.0.0.1:${p.client}`).join(",");
  await until(
    "etcd healthy",
    async () => (await fetch(`http://127.0.0.1:${ports[0]!.client}/health`)).ok,
    MASTERS * 20_000,
  );

  const admin = await pki.client("admin", "admin", ["system:masters"]);
  const urls: string[] = [];
  const healthPorts: number[] = [];
  for (let i = 0; i < MASTERS; i++) {
    const port = await freePort();
    const healthPort = await freePort();
    healthPorts.push(healthPort);
    const url = `https://127.0.0.1:${port}`;
    urls.push(url);
    const kubeconfig = join(dir, `server-${i}.kubeconfig`);
    await writeFile(kubeconfig, kubeconfigYaml(url, pki.caCert, admin.cert, admin.key), { mode: 0o600 });
    start(`lab-server-${i}`, process.execPath, [
      ...nodeArgs(`lab-server-${i}`),
      ...labServerArgv(etcdServers, pki, port, [
        `--health-port=${healthPort}`,
        `--kubeconfig=${kubeconfig}`,
        "--cluster-cidr=10.244.0.0/16",
      ]),
    ]);
    clients.push(
      new LabClient({
        server: url,
        ca: await readFile(pki.caCert),
        cert: await readFile(admin.cert),
        key: await readFile(admin.key),
      }),
    );
  }
  if (READYZ) {
    // what keepalived runs on every master (templates/keepalived.ts: CHECK_INTERVAL_S)
    for (let i = 0; i < MASTERS; i++) {
      const script = join(dir, `readyz-${i}.sh`);
      await writeFile(script, renderReadyzCheck(healthPorts[i]!), { mode: 0o755 });
      start(`readyz-${i}`, "/bin/sh", [
        "-c",
        `while :; do ${script} || echo failed >&2; sleep ${CHECK_INTERVAL_S}; done`,
      ]);
    }
  }
  const c0 = clients[0]!;
  for (const c of clients) await until("API up", () => c.list("namespaces").then(() => true));
  await until("both leases held", async () => {
    const l = await Promise.all(
      ["kube-controller-manager", "kube-scheduler"].map((n) => c0.get("leases", n, "kube-system")),
    );
    return l.every((x) => x.spec?.holderIdentity);
  });

  if (AGENTS > 0) {
    node = await startTestNode();
    const name = "bench-node";
    const cert = await pki.client("agent", `system:node:${name}`, ["system:nodes"]);
    const kubeconfig = join(dir, "agent.kubeconfig");
    await writeFile(kubeconfig, kubeconfigYaml(urls[0]!, pki.caCert, cert.cert, cert.key, name), {
      mode: 0o600,
    });
    const nodeIP = (await node.inNetns(["ip", "-4", "-o", "addr", "show", "dev", "eth0"])).match(
      /inet (\S+)\//,
    )![1]!;
    start("lab-agent", process.execPath, [
      ...nodeArgs("lab-agent"),
      "--import",
      "tsx",
      "node/main.ts",
      `--kubeconfig=${kubeconfig}`,
      `--node-name=${name}`,
      `--node-ip=${nodeIP}`,
      `--pod-cidr=${node.podCidr}`,
      `--api-servers=${urls.join(",")}`,
      "--cluster-dns=10.96.0.10",
      `--state-dir=${join(dir, "agent")}`,
      `--container-runtime-endpoint=${node.socket}`,
      `--pod-log-dir=${node.logRoot}`,
      `--cgroup-root=${node.cgroupRoot}`,
      `--netns=${node.netns}`,
      "--port=0",
    ]);
    await until("node Ready", async () =>
      (await c0.get("nodes", name)).status?.conditions?.some(
        (c) => c.type === "Ready" && c.status === "True",
      ),
    );
    for (let i = 0; i < PODS; i++) {
      await c0.create("pods", {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: `idle-${i}`, namespace: "default" },
        spec: {
          nodeName: name,
          terminationGracePeriodSeconds: 1,
          containers: [
            {
              name: "web",
              image: SAMPLE_IMAGE,
              imagePullPolicy: "Never",
              readinessProbe: { httpGet: { path: "/", port: 8080 }, periodSeconds: 10 },
            },
          ],
        },
      });
    }
    if (PODS > 0)
      await until(
        "pods ready",
        async () =>
          (await c0.list("pods", { namespace: "default" })).items.filter((p) =>
            p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
          ).length === PODS,
        120_000,
      );
  }
  for (const c of clients) c.close();
  clients.length = 0;

  await sleep(SETTLE_S * 1000);
  const pidOf = (p: Proc): number => p.proc.pid!;
  const before = await Promise.all(procs.map((p) => cpuSeconds(pidOf(p))));
  const t0 = performance.now();
  await sleep(MEASURE_S * 1000);
  const after = await Promise.all(procs.map((p) => cpuSeconds(pidOf(p))));
  const wall = (performance.now() - t0) / 1000;
  const pct = (i: number): { self: number; children: number } => ({
    self: (100 * (after[i]!.self - before[i]!.self)) / wall,
    children: (100 * (after[i]!.children - before[i]!.children)) / wall,
  });
  const rows = procs.map((p, i) => ({ name: p.name, ...pct(i) }));
  const sum = (prefix: string): number =>
    rows.filter((r) => r.name.startsWith(prefix)).reduce((a, r) => a + r.self + r.children, 0);
  console.log(`idle ${Math.round(wall)} s, ${MASTERS} master(s), ${AGENTS} agent(s), ${PODS} pod(s):`);
  for (const r of rows)
    console.log(
      `  ${r.name.padEnd(14)} ${r.self.toFixed(2).padStart(6)} % of a core` +
        (r.children > 0.005 ? `  (+${r.children.toFixed(2)} % in child processes)` : ""),
    );
  const etcd = sum("etcd");
  const server = sum("lab-server");
  console.log(
    JSON.stringify({
      masters: MASTERS,
      pods: PODS,
      measureS: Math.round(wall),
      cpuPercent: Object.fromEntries(rows.map((r) => [r.name, +(r.self + r.children).toFixed(2)])),
      etcdTotal: +etcd.toFixed(2),
      labServerTotal: +server.toFixed(2),
      labServerToEtcd: etcd > 0 ? +(server / etcd).toFixed(2) : null,
      readyzChecks: READYZ ? +sum("readyz").toFixed(2) : null,
    }),
  );
} finally {
  for (const c of clients) c.close();
  // SIGTERM first so profiles get written and leases released; etcd last
  const ordered = [...procs].sort(
    (a, b) => Number(a.name.startsWith("etcd")) - Number(b.name.startsWith("etcd")),
  );
  for (const p of ordered) {
    if (p.proc.exitCode !== null || p.proc.signalCode !== null) continue;
    const exited = new Promise((r) => p.proc.once("exit", r));
    p.proc.kill("SIGTERM");
    await Promise.race([exited, sleep(10_000)]);
    if (p.proc.exitCode === null && p.proc.signalCode === null) {
      p.proc.kill("SIGKILL");
      await exited;
    }
  }
  await node?.destroy();
  await pki.cleanup();
  await rm(dir, { recursive: true, force: true });
}
