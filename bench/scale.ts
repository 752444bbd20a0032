/**
 * END TO END at scale (compare bench/scheduler-throughput.ts, which measures the scheduler alone
 * over an in-memory store): a real etcd, the standalone lab-server (bin/lab-server.js --cert-dir,
 * its own scheduler and controllers) over HTTPS, and ONE hollow agent process holding N nodes
 * (bin/lab-agent.js --hollow --hollow-count N). Deployments totalling P pods are created at once;
 * a pod watch times when each pod is created, scheduled (spec.nodeName set) and Running+Ready. A
 * side loop of ConfigMap creates and patches measures the latency of mutating calls under that
 * load; lab-server's RSS is sampled throughout.
 *
 *   npx tsx bench/scale.ts [--nodes 1000] [--pods 10000] [--deployments 10] [--timeout 900]
 *                          [--side-workers 2] [--profile DIR] [--baseline REF]
 *
 * --profile DIR writes a V8 CPU profile of lab-server there (node --cpu-prof) on its exit.
 * --baseline REF runs the same bench with this tree's lab-server, then with git REF's (its tree
 * exported to a temp dir with `git archive`, sharing node_modules; the hollow agent stays this
 * tree's, so the load is the same), each on a fresh etcd, and prints both side by side with the
 * ratios. lab-server CPU seconds per pod is the figure least moved by other load on the
 * machine; pods/s and latencies move with it.
 *
 * Targets (issue 18): >= 300 pods/s end to end, mutating p99 < 1 s, lab-server RSS < 1 GiB.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, stat, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { V1Pod } from "@kubernetes/client-node";
import { LabClient } from "../api/client.ts";
import { freePort, startEtcd } from "../test/helpers/etcd.ts";
import { sleep } from "../lib/sleep.ts";

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const NODES = arg("nodes", 1000);
const PODS = arg("pods", 10000);
const DEPLOYMENTS = Math.max(1, arg("deployments", 10));
const TIMEOUT_S = arg("timeout", 900);
const SIDE_WORKERS = arg("side-workers", 2);
function strArg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const PROFILE_DIR = strArg("profile");
const BASELINE = strArg("baseline");

const SERVER_BIN = fileURLToPath(new URL("../bin/lab-server.js", import.meta.url));
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const AGENT_BIN = fileURLToPath(new URL("../bin/lab-agent.js", import.meta.url));

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;
}

async function rssMiB(pid: number | undefined): Promise<number> {
  if (!pid) return NaN;
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  return m ? Number(m[1]) / 1024 : NaN;
}

async function cpuSeconds(pid: number | undefined): Promise<number> {
  if (!pid) return NaN;
  const s = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime in clock ticks (USER_HZ 100)
}

async function until(what: string, f: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f().catch(() => false))) {
    if (Date.now() > end) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await sleep(1000);
  }
}

const procs: ChildProcess[] = [];
function start(bin: string, args: string[], name: string, nodeFlags: string[] = []): ChildProcess {
  const p = spawn(process.execPath, [...nodeFlags, bin, ...args], { stdio: ["ignore", "ignore", "pipe"] });
  const tail: string[] = [];
  p.stderr?.on("data", (d: Buffer) => {
    tail.push(...d.toString().trim().split("\n"));
    tail.splice(0, Math.max(0, tail.length - 20));
  });
  p.on("exit", (code, sig) => {
    if (!stopping) process.stderr.write(`${name} exited (${code ?? sig}):\n  ${tail.join("\n  ")}\n`);
  });
  procs.push(p);
  return p;
}
let stopping = false;

interface Result {
  label: string;
  nodesReadyS: number;
  idleServerCore: number;
  created: number;
  scheduledRate: number;
  runningRate: number;
  e2e: number;
  done: boolean;
  p50: number;
  p99: number;
  calls: number;
  sideErrors: number;
  rssIdle: number;
  rssEnd: number;
  rssPeak: number;
  agentRss: number;
  serverCpuS: number;
  agentCpuS: number;
  wallS: number;
  running: number;
}

async function trial(label: string, serverBin: string): Promise<Result> {
  console.log(`\n--- ${label}: ${serverBin}`);
  stopping = false;
  procs.length = 0;
  const etcd = await startEtcd();
  const dir = await mkdtemp(join(tmpdir(), "lab-scale-"));
  const kubeconfig = join(dir, "kubeconfig");
  try {
    const port = await freePort();
    const server = start(
      serverBin,
      [
        ...["--etcd-servers", etcd.endpoint, "--listen", `127.0.0.1:${port}`],
        ...["--cert-dir", join(dir, "pki"), "--write-kubeconfig", kubeconfig],
      ],
      "lab-server",
      PROFILE_DIR ? ["--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}`] : [],
    );
    await until("the admin kubeconfig", () => stat(kubeconfig).then(() => true), 120_000);
    const client = await LabClient.fromKubeconfig(kubeconfig);
    await until("lab-server", () => client.list("namespaces").then(() => true), 60_000);

    const tNodes = Date.now();
    const agent = start(
      AGENT_BIN,
      [
        "--hollow",
        "--hollow-count",
        String(NODES),
        "--node-name-prefix",
        "bench-",
        "--kubeconfig",
        kubeconfig,
      ],
      "hollow agent",
    );
    await until(
      `${NODES} Ready hollow nodes`,
      async () => {
        const nodes = (await client.list("nodes")).items;
        return (
          nodes.filter((n) => n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"))
            .length >= NODES
        );
      },
      600_000,
    );
    const nodesS = (Date.now() - tNodes) / 1000;
    console.log(`${NODES} hollow nodes Ready after ${nodesS.toFixed(1)} s (one agent process)`);
    const rssIdle = await rssMiB(server.pid);
    // Idle cost of the heartbeats alone (N leases every 10 s), before any pod exists.
    await sleep(5000);
    const idle0 = {
      server: await cpuSeconds(server.pid),
      agent: await cpuSeconds(agent.pid),
      at: Date.now(),
    };
    await sleep(20_000);
    const idleS = (Date.now() - idle0.at) / 1000;
    const idleCpu = {
      server: ((await cpuSeconds(server.pid)) - idle0.server) / idleS,
      agent: ((await cpuSeconds(agent.pid)) - idle0.agent) / idleS,
    };
    console.log(
      `idle with ${NODES} nodes: lab-server ${(idleCpu.server * 100).toFixed(0)}% of a core, hollow agent ${(idleCpu.agent * 100).toFixed(0)}%`,
    );

    // Pod watch: when each pod is created, scheduled and Running+Ready.
    const created = new Map<string, number>();
    const scheduled = new Map<string, number>();
    const running = new Map<string, number>();
    const watchStop = new AbortController();
    const rv = (await client.list("pods", { limit: 1 })).metadata.resourceVersion;
    const watching = (async () => {
      let from = rv;
      while (!watchStop.signal.aborted) {
        try {
          for await (const ev of client.watch("pods", {
            resourceVersion: from,
            allowWatchBookmarks: true,
            signal: watchStop.signal,
          })) {
            const p = ev.object as V1Pod;
            from = p.metadata?.resourceVersion ?? from;
            if (ev.type === "BOOKMARK") continue;
            const uid = p.metadata?.uid ?? "";
            const now = performance.now();
            if (!created.has(uid)) created.set(uid, now);
            if (p.spec?.nodeName && !scheduled.has(uid)) scheduled.set(uid, now);
            if (
              !running.has(uid) &&
              p.status?.phase === "Running" &&
              p.status.conditions?.some((c) => c.type === "Ready" && c.status === "True")
            )
              running.set(uid, now);
          }
        } catch (err) {
          if (!watchStop.signal.aborted)
            process.stderr.write(`pod watch: ${(err as Error).message}; rewatching\n`);
          await sleep(500);
        }
      }
    })();

    // Side loop: mutating calls (create + patch of ConfigMaps) while the pods roll out.
    const latencies: number[] = [];
    const sideStop = new AbortController();
    let sideErrors = 0;
    const side = Array.from({ length: SIDE_WORKERS }, async (_, w) => {
      for (let i = 0; !sideStop.signal.aborted; i++) {
        const name = `side-${w}-${i}`;
        let t = performance.now();
        try {
          await client.create("configmaps", {
            apiVersion: "v1",
            kind: "ConfigMap",
            metadata: { name, namespace: "default" },
            data: { i: String(i) },
          });
          latencies.push(performance.now() - t);
          t = performance.now();
          await client.patch("configmaps", name, { data: { patched: "yes" } }, { namespace: "default" });
          latencies.push(performance.now() - t);
        } catch {
          sideErrors++;
        }
        await sleep(100);
      }
    });

    let rssPeak = 0;
    const sampler = setInterval(() => {
      void rssMiB(server.pid).then((r) => (rssPeak = Math.max(rssPeak, r || 0)));
    }, 1000);

    const cpu0 = { server: await cpuSeconds(server.pid), agent: await cpuSeconds(agent.pid) };
    const t0 = performance.now();
    const per = Math.floor(PODS / DEPLOYMENTS);
    for (let d = 0; d < DEPLOYMENTS; d++) {
      const replicas = d === DEPLOYMENTS - 1 ? PODS - per * (DEPLOYMENTS - 1) : per;
      await client.create("deployments", {
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: `scale-${d}`, namespace: "default" },
        spec: {
          replicas,
          selector: { matchLabels: { app: `scale-${d}` } },
          template: {
            metadata: { labels: { app: `scale-${d}` } },
            spec: { containers: [{ name: "app", image: "lab/sample:latest" }] },
          },
        },
      });
    }
    let lastReport = 0;
    const deadline = t0 + TIMEOUT_S * 1000;
    while (running.size < PODS && performance.now() < deadline) {
      await sleep(1000);
      const s = (performance.now() - t0) / 1000;
      if (s - lastReport >= 10) {
        lastReport = s;
        console.log(
          `  ${s.toFixed(0).padStart(4)} s: created ${created.size}, scheduled ${scheduled.size}, running ${running.size}; lab-server RSS ${(await rssMiB(server.pid)).toFixed(0)} MiB`,
        );
      }
    }
    const tEnd = performance.now();
    const cpu1 = { server: await cpuSeconds(server.pid), agent: await cpuSeconds(agent.pid) };
    sideStop.abort();
    await Promise.all(side);
    clearInterval(sampler);
    const rssEnd = await rssMiB(server.pid);
    rssPeak = Math.max(rssPeak, rssEnd || 0);
    const agentRss = await rssMiB(agent.pid);
    watchStop.abort();
    await watching;
    client.close();

    const last = (m: Map<string, number>): number => Math.max(...m.values()) - t0;
    const rate = (m: Map<string, number>): string =>
      m.size
        ? `${(m.size / (last(m) / 1000)).toFixed(0)} pods/s (${m.size} in ${(last(m) / 1000).toFixed(1)} s)`
        : "none";
    latencies.sort((a, b) => a - b);
    const done = running.size >= PODS;
    const e2e = running.size / ((done ? last(running) : tEnd - t0) / 1000);
    console.log(
      `\nEND TO END (HTTPS, etcd, ${NODES} hollow nodes, ${PODS} pods in ${DEPLOYMENTS} Deployments):`,
    );
    console.log(`  pods created   ${rate(created)}`);
    console.log(`  pods scheduled ${rate(scheduled)}`);
    console.log(
      `  pods Running   ${rate(running)}${done ? "" : `  -- only ${running.size}/${PODS} within ${TIMEOUT_S} s`}`,
    );
    console.log(
      `  mutating calls under load: ${latencies.length} (create+patch ConfigMap), p50 ${pct(latencies, 50).toFixed(0)} ms, p99 ${pct(latencies, 99).toFixed(0)} ms, max ${latencies.at(-1)?.toFixed(0)} ms, errors ${sideErrors}`,
    );
    console.log(
      `  lab-server RSS: ${rssIdle.toFixed(0)} MiB with ${NODES} nodes idle, ${rssEnd.toFixed(0)} MiB at ${running.size} pods, peak ${rssPeak.toFixed(0)} MiB`,
    );
    console.log(`  hollow agent RSS: ${agentRss.toFixed(0)} MiB`);
    console.log(
      `  CPU during the rollout: lab-server ${(cpu1.server - cpu0.server).toFixed(1)} s, hollow agent ${(cpu1.agent - cpu0.agent).toFixed(1)} s over ${((tEnd - t0) / 1000).toFixed(1)} s wall`,
    );
    const ok = (b: boolean): string => (b ? "met" : "MISSED");
    console.log(
      `  targets: >=300 pods/s end to end: ${ok(done && e2e >= 300)} (${e2e.toFixed(0)}); p99 < 1 s: ${ok(pct(latencies, 99) < 1000)}; RSS < 1 GiB: ${ok(rssPeak < 1024)}`,
    );
    const rateOf = (m: Map<string, number>): number => (m.size ? m.size / (last(m) / 1000) : 0);
    return {
      label,
      nodesReadyS: nodesS,
      idleServerCore: idleCpu.server,
      created: created.size,
      scheduledRate: rateOf(scheduled),
      runningRate: rateOf(running),
      e2e,
      done,
      p50: pct(latencies, 50),
      p99: pct(latencies, 99),
      calls: latencies.length,
      sideErrors,
      rssIdle,
      rssEnd,
      rssPeak,
      agentRss,
      serverCpuS: cpu1.server - cpu0.server,
      agentCpuS: cpu1.agent - cpu0.agent,
      wallS: (tEnd - t0) / 1000,
      running: running.size,
    };
  } finally {
    stopping = true;
    for (const p of procs) p.kill("SIGTERM");
    // a CPU profile is written on exit; lab-server first releases its leader leases
    const end = Date.now() + (PROFILE_DIR ? 60_000 : 5000);
    while (Date.now() < end && procs.some((p) => p.exitCode === null && p.signalCode === null))
      await sleep(200);
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    await etcd.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The tree of git `ref` in a temp dir (git archive), with this checkout's node_modules. */
async function exportRef(ref: string): Promise<{ dir: string; serverBin: string; commit: string }> {
  const commit = execFileSync("git", ["rev-parse", "--short", ref], { cwd: ROOT, encoding: "utf8" }).trim();
  const dir = await mkdtemp(join(tmpdir(), "lab-scale-baseline-"));
  execFileSync("sh", ["-c", `git archive --format=tar ${commit} | tar -x -C "${dir}"`], { cwd: ROOT });
  await symlink(join(ROOT, "node_modules"), join(dir, "node_modules"));
  return { dir, serverBin: join(dir, "bin/lab-server.js"), commit };
}

function sideBySide(a: Result, b: Result): void {
  const perPod = (r: Result): number => (1000 * r.serverCpuS) / Math.max(1, r.running);
  const rows: [string, (r: Result) => number, string, boolean][] = [
    // name, value, unit, higher is better
    ["pods Running per second (end to end)", (r) => r.e2e, "pods/s", true],
    ["pods scheduled per second", (r) => r.scheduledRate, "pods/s", true],
    ["lab-server CPU per pod (rollout)", perPod, "ms", false],
    ["lab-server CPU, idle nodes", (r) => r.idleServerCore * 100, "% core", false],
    ["mutating call p50", (r) => r.p50, "ms", false],
    ["mutating call p99", (r) => r.p99, "ms", false],
    ["lab-server RSS peak", (r) => r.rssPeak, "MiB", false],
    ["lab-server RSS at the end", (r) => r.rssEnd, "MiB", false],
  ];
  console.log(`\nSIDE BY SIDE (same run, same machine; ${NODES} hollow nodes, ${PODS} pods):`);
  console.log(`  ${"".padEnd(40)}${a.label.padStart(18)}${b.label.padStart(18)}   ratio (better > 1)`);
  for (const [name, f, unit, higher] of rows) {
    const x = f(a);
    const y = f(b);
    const ratio = higher ? y / x : x / y;
    console.log(
      `  ${name.padEnd(40)}${`${x.toFixed(1)} ${unit}`.padStart(18)}${`${y.toFixed(1)} ${unit}`.padStart(18)}   ${Number.isFinite(ratio) ? ratio.toFixed(2) : "-"}`,
    );
  }
  for (const r of [a, b])
    if (!r.done) console.log(`  ${r.label}: only ${r.running}/${PODS} pods Running within ${TIMEOUT_S} s`);
}

async function main(): Promise<void> {
  if (!BASELINE) {
    await trial("this tree", SERVER_BIN);
    return;
  }
  const base = await exportRef(BASELINE);
  try {
    // This tree first: its modules are loaded at once, so editing the checkout meanwhile is safe.
    const b = await trial("this tree", SERVER_BIN);
    const a = await trial(`baseline ${base.commit}`, base.serverBin);
    sideBySide(a, b);
  } finally {
    await rm(base.dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`scale bench: ${(err as Error).message}\n`);
  process.exitCode = 1;
  stopping = true;
  for (const p of procs) p.kill("SIGKILL");
});
