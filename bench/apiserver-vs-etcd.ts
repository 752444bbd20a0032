/**
 * lab-server against raw etcd, same concurrency: create, get, list throughput and latency, watch
 * fan-out latency to many watchers, and the server's RSS holding all objects.
 *
 *   npx tsx bench/apiserver-vs-etcd.ts [--objects 10000] [--concurrency 100] [--watchers 1000]
 *
 * Starts its own etcd and a lab-server child process (controlplane/main.ts) on free loopback ports.
 */
import { spawn } from "node:child_process";
import { setMaxListeners } from "node:events";
import { readFile } from "node:fs/promises";
import { Etcd3 } from "etcd3";
import { LabClient } from "../api/client.ts";
import { freePort, startEtcd } from "../test/helpers/etcd.ts";
import { labServerArgv } from "../test/helpers/fault-load.ts";
import { makeTestPki } from "../test/helpers/test-pki.ts";

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const OBJECTS = arg("objects", 10000);
const CONCURRENCY = arg("concurrency", 100);
const WATCHERS = arg("watchers", 1000);

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;
}

interface Result {
  opsPerSec: number;
  p50: number;
  p99: number;
}

/** Runs op(i) for i < n with `concurrency` in flight; latencies in ms. */
async function measure(n: number, concurrency: number, op: (i: number) => Promise<unknown>): Promise<Result> {
  const lat: number[] = [];
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        const t = performance.now();
        await op(i);
        lat.push(performance.now() - t);
      }
    }),
  );
  const secs = (performance.now() - start) / 1000;
  lat.sort((a, b) => a - b);
  return { opsPerSec: n / secs, p50: pct(lat, 50), p99: pct(lat, 99) };
}

function fmt(name: string, r: Result): string {
  return `${name.padEnd(28)} ${r.opsPerSec.toFixed(0).padStart(7)} ops/s   p50 ${r.p50.toFixed(1).padStart(7)} ms   p99 ${r.p99.toFixed(1).padStart(7)} ms`;
}

async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

async function main(): Promise<void> {
  const etcd = await startEtcd();
  const pki = await makeTestPki();
  const admin = await pki.client("admin", "admin", ["system:masters"]);
  const port = await freePort();
  const server = spawn(process.execPath, labServerArgv(etcd.endpoint, pki, port), {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const raw = new Etcd3({ hosts: etcd.endpoint });
  const client = new LabClient({
    server: `https://127.0.0.1:${port}`,
    ca: await readFile(pki.caCert),
    cert: await readFile(admin.cert),
    key: await readFile(admin.key),
    timeoutMs: 60_000,
  });
  try {
    for (let i = 0; ; i++) {
      try {
        await client.list("namespaces");
        break;
      } catch (err) {
        if (i > 100) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    console.log(`objects ${OBJECTS}, concurrency ${CONCURRENCY}, watchers ${WATCHERS}`);
    // Warm up: open the keep-alive TLS connections once, as long-running clients do.
    await measure(CONCURRENCY * 2, CONCURRENCY, () => client.list("namespaces"));
    await measure(CONCURRENCY * 2, CONCURRENCY, () => raw.get("/warmup").string());
    const value = (i: number): string =>
      JSON.stringify({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: `cm-${i}`, namespace: "default" },
        data: { k: "v".repeat(100) },
      });

    const etcdPut = await measure(OBJECTS, CONCURRENCY, (i) =>
      raw.put(`/bench/cm-${i}`).value(value(i)).exec(),
    );
    const apiCreate = await measure(OBJECTS, CONCURRENCY, (i) =>
      client.create("configmaps", {
        metadata: { name: `cm-${i}`, namespace: "default" },
        data: { k: "v".repeat(100) },
      }),
    );
    console.log(fmt("etcd put", etcdPut));
    console.log(fmt("lab-server create", apiCreate));
    console.log(
      `create/put throughput ratio: ${((apiCreate.opsPerSec / etcdPut.opsPerSec) * 100).toFixed(0)}% (target >= 40%)`,
    );

    const etcdGet = await measure(OBJECTS, CONCURRENCY, (i) => raw.get(`/bench/cm-${i}`).string());
    const apiGet = await measure(OBJECTS, CONCURRENCY, (i) => client.get("configmaps", `cm-${i}`, "default"));
    console.log(fmt("etcd get", etcdGet));
    console.log(fmt("lab-server get", apiGet));

    const lists = 10;
    const etcdList = await measure(lists, 1, () => raw.getAll().prefix("/bench/").strings());
    const apiList = await measure(lists, 1, () => client.list("configmaps", { namespace: "default" }));
    console.log(fmt(`etcd range (${OBJECTS} keys)`, etcdList));
    console.log(fmt(`lab-server list (${OBJECTS})`, apiList));

    console.log(
      `lab-server RSS holding ${OBJECTS} objects: ${(await rssMiB(server.pid!)).toFixed(0)} MiB (target < 200)`,
    );

    // Watch fan-out: every watcher records when each event arrives.
    const rv = (await client.list("configmaps", { namespace: "default", limit: 1 })).metadata.resourceVersion;
    const abort = new AbortController();
    setMaxListeners(WATCHERS + 10, abort.signal);
    const sent = new Map<string, number>();
    const delays: number[] = [];
    const EVENTS = 10;
    let ready = 0;
    const watchers = Array.from({ length: WATCHERS }, async () => {
      const it = client.watch("configmaps", {
        namespace: "default",
        resourceVersion: rv,
        labelSelector: "bench=watch",
        signal: abort.signal,
      });
      ready++;
      let seen = 0;
      for await (const ev of it) {
        const t = sent.get(ev.object.metadata?.name ?? "");
        if (t !== undefined) delays.push(performance.now() - t);
        if (++seen === EVENTS) break;
      }
    });
    while (ready < WATCHERS) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 2000 + WATCHERS * 2));
    for (let i = 0; i < EVENTS; i++) {
      const name = `w-${i}`;
      sent.set(name, performance.now());
      await client.create("configmaps", {
        metadata: { name, namespace: "default", labels: { bench: "watch" } },
      });
      await new Promise((r) => setTimeout(r, 100));
    }
    const deadline = setTimeout(() => abort.abort(), 30_000);
    await Promise.all(watchers.map((w) => w.catch(() => undefined)));
    clearTimeout(deadline);
    delays.sort((a, b) => a - b);
    console.log(
      `watch fan-out: ${delays.length}/${WATCHERS * EVENTS} deliveries, p50 ${pct(delays, 50).toFixed(1)} ms, p99 ${pct(delays, 99).toFixed(1)} ms (target p99 < 1000 ms)`,
    );
    console.log(`lab-server RSS after fan-out: ${(await rssMiB(server.pid!)).toFixed(0)} MiB`);
  } finally {
    client.close();
    raw.close();
    server.kill("SIGTERM");
    await new Promise((r) => server.once("exit", r));
    await etcd.stop();
    await pki.cleanup();
  }
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
