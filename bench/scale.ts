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
 *                          [--side-workers 2] [--profile DIR]
 *
 * --profile DIR writes a V8 CPU profile of lab-server there (node --cpu-prof) on its exit.
 *
 * Targets (issue 18): >= 300 pods/s end to end, mutating p99 < 1 s, lab-server RSS < 1 GiB.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
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
const PROFILE_DIR = (() => {
  const i = process.argv.indexOf("--profile");
  return i >= 0 ? process.argv[i + 1] : undefined;
})();

const SERVER_BIN = fileURLToPath(new URL("../bin/lab-server.js", import.meta.url));
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

async function main(): Promise<void> {
  const etcd = await startEtcd();
  const dir = await mkdtemp(join(tmpdir(), "lab-scale-"));
  const kubeconfig = join(dir, "kubeconfig");
  try {
    const port = await freePort();
    const server = start(
      SERVER_BIN,
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
  } finally {
    stopping = true;
    for (const p of procs) p.kill("SIGTERM");
    await sleep(PROFILE_DIR ? 10_000 : 2000); // a CPU profile is written on exit
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    await etcd.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`scale bench: ${(err as Error).message}\n`);
  process.exitCode = 1;
  stopping = true;
  for (const p of procs) p.kill("SIGKILL");
});
