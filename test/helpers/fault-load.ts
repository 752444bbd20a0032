/**
 * A real lab-server process (controlplane/main.ts) over an {@link EtcdCluster}, and the load the
 * fault-injection suite and bench/failover.ts run against it: a create loop (every acknowledged
 * write recorded), a list loop, and a watch that resumes from its last resourceVersion and relists
 * on 410, recording what it saw so a gap can be found.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { Agent, request, type RequestOptions } from "node:https";
import { freePort } from "./etcd.ts";
import type { EtcdCluster } from "./etcd-cluster.ts";
import type { TestPki } from "./test-pki.ts";

export interface LabServerProc {
  proc: ChildProcess;
  port: number;
  healthPort: number;
  stderr: () => string;
  /** ms from spawn to the first /readyz 200 */
  startMs: number;
  alive: () => boolean;
  stop: () => Promise<void>;
}

export async function readyz(healthPort: number, timeoutMs = 1000): Promise<number> {
  return fetch(`http://127.0.0.1:${healthPort}/readyz`, { signal: AbortSignal.timeout(timeoutMs) })
    .then((r) => r.status)
    .catch(() => 0);
}

/** Polls /readyz until 200; returns the ms it took, or throws after `ms` naming the last answer. */
export async function waitReady(healthPort: number, ms: number): Promise<number> {
  const t0 = Date.now();
  let last = 0;
  while (Date.now() - t0 < ms) {
    last = await readyz(healthPort);
    if (last === 200) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`lab-server /readyz not 200 within ${ms} ms (last answer: ${last || "none"})`);
}

/**
 * `node` arguments that run lab-server (controlplane/main.ts) on 127.0.0.1:`port` with the test PKI's
 * serving certificate and client CA, over `etcdServers` (comma-separated); `extra` flags follow.
 */
export function labServerArgv(
  etcdServers: string,
  pki: TestPki,
  port: number,
  extra: string[] = [],
): string[] {
  return [
    ...["--import", "tsx", "controlplane/main.ts", "--etcd-servers", etcdServers],
    ...["--tls-cert-file", pki.serverCert, "--tls-private-key-file", pki.serverKey],
    ...["--client-ca-file", pki.caCert, "--bind-address", "127.0.0.1", "--secure-port", String(port)],
    ...extra,
  ];
}

export async function startLabServer(cluster: EtcdCluster, pki: TestPki): Promise<LabServerProc> {
  const port = await freePort();
  const healthPort = await freePort();
  let err = "";
  const t0 = Date.now();
  const proc = spawn(
    process.execPath,
    labServerArgv(cluster.proxiedUrls.join(","), pki, port, [
      ...["--etcd-cafile", pki.caCert, "--etcd-certfile", cluster.clientCert.cert],
      ...["--etcd-keyfile", cluster.clientCert.key, "--health-port", String(healthPort)],
    ]),
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  proc.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  const alive = (): boolean => proc.exitCode === null && proc.signalCode === null;
  const deadline = Date.now() + 60_000;
  while ((await readyz(healthPort)) !== 200) {
    if (!alive()) throw new Error(`lab-server exited during start: ${err}`);
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`lab-server not ready within 60 s: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  const startMs = Date.now() - t0;
  return {
    proc,
    port,
    healthPort,
    stderr: () => err,
    startMs,
    alive,
    async stop() {
      if (!alive()) return;
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** What a stderr must not contain: an uncaught exception or any stack trace. */
export function crashLines(stderr: string): string[] {
  return stderr
    .split("\n")
    .filter((l) => /uncaught|unhandled|^\s+at\s+\S+.*:\d+:\d+\)?$|^\w*Error( \[\w+\])?: /i.test(l));
}

export interface ApiClientTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export async function adminTls(pki: TestPki): Promise<ApiClientTls> {
  const admin = await pki.client("admin", "admin", ["system:masters"]);
  return { ca: await readFile(pki.caCert), cert: await readFile(admin.cert), key: await readFile(admin.key) };
}

/** One JSON request with a deadline that holds when lab-server never answers. */
export function api(
  port: number,
  tls: ApiClientTls,
  agent: Agent,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 10_000,
): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const opts: RequestOptions = {
      host: "127.0.0.1",
      port,
      method,
      path,
      agent,
      ...tls,
      headers: { Accept: "application/json", ...(data ? { "Content-Type": "application/json" } : {}) },
      timeout: timeoutMs,
    };
    const req = request(opts, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        let json: Record<string, unknown> = {};
        try {
          json = JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>;
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode ?? 0, json });
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`${method} ${path}: no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(data);
  });
}

interface Ack {
  name: string;
  rv: number;
  at: number;
}

/** A run of watch events with no 410 in between: every acknowledged write in (from, last] must be in it. */
interface Segment {
  from: number;
  rvs: number[];
}

/**
 * 1,000 watches on `path`, 50 at a time, each cancelled by the client within 300 ms of its answer
 * (the client going away mid-watch); `started()` counts those begun, `done` resolves after the last.
 */
export function watchChurn(
  port: number,
  tls: ApiClientTls,
  path: string,
  onStatus: (code: number) => void = () => undefined,
): { started: () => number; done: Promise<void> } {
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const req = request({ host: "127.0.0.1", port, path, ...tls, agent: false }, (res) => {
        onStatus(res.statusCode ?? 0);
        res.on("data", () => undefined);
        setTimeout(() => req.destroy(), Math.random() * 300);
      });
      req.on("error", () => undefined);
      req.on("close", () => resolve());
      req.end();
    });
  let started = 0;
  const done = (async () => {
    while (started < 1000) {
      const batch = Array.from({ length: Math.min(50, 1000 - started) }, () => one());
      started += batch.length;
      await Promise.all(batch);
    }
  })();
  return { started: () => started, done };
}

export class ApiLoad {
  readonly acks: Ack[] = [];
  createErrors = 0;
  listOk = 0;
  listErrors = 0;
  watchGone = 0;
  watchRestarts = 0;
  readonly segments: Segment[] = [];
  /** When the watch delivered each resourceVersion (ms since epoch). */
  readonly seenAt = new Map<number, number>();
  /** The namespace's creation resourceVersion: older than anything the watch cache covers. */
  namespaceRv = 0;
  private running = true;
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 16 });
  private loops: Promise<void>[] = [];
  private watchReq: ReturnType<typeof request> | undefined;
  private n = 0;

  constructor(
    private readonly port: number,
    private readonly tls: ApiClientTls,
    readonly namespace: string,
  ) {}

  private call(method: string, path: string, body?: unknown) {
    return api(this.port, this.tls, this.agent, method, path, body);
  }

  async start(): Promise<void> {
    const ns = await this.call("POST", "/api/v1/namespaces", { metadata: { name: this.namespace } });
    if (ns.status !== 201) throw new Error(`creating namespace ${this.namespace}: ${ns.status}`);
    this.namespaceRv = Number((ns.json["metadata"] as { resourceVersion: string }).resourceVersion);
    const list = await this.call("GET", `/api/v1/namespaces/${this.namespace}/configmaps`);
    const rv = Number((list.json["metadata"] as { resourceVersion: string }).resourceVersion);
    this.segments.push({ from: rv, rvs: [] });
    this.loops = [this.createLoop(), this.listLoop(), this.watchLoop(rv)];
  }

  private async createLoop(): Promise<void> {
    while (this.running) {
      const name = `c-${this.n++}`;
      try {
        const r = await this.call("POST", `/api/v1/namespaces/${this.namespace}/configmaps`, {
          metadata: { name },
          data: { n: name },
        });
        if (r.status === 201) {
          const rv = Number((r.json["metadata"] as { resourceVersion: string }).resourceVersion);
          this.acks.push({ name, rv, at: Date.now() });
        } else this.createErrors++;
      } catch {
        this.createErrors++;
      }
      if (this.running) await new Promise((r) => setTimeout(r, 10));
    }
  }

  private async listLoop(): Promise<void> {
    while (this.running) {
      try {
        const r = await this.call("GET", `/api/v1/namespaces/${this.namespace}/configmaps?limit=50`);
        if (r.status === 200) this.listOk++;
        else this.listErrors++;
      } catch {
        this.listErrors++;
      }
      if (this.running) await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** The last resourceVersion the watch has seen (its current segment). */
  get watchedRv(): number {
    const s = this.segments[this.segments.length - 1]!;
    return s.rvs[s.rvs.length - 1] ?? s.from;
  }

  private async watchLoop(from: number): Promise<void> {
    let rv = from;
    while (this.running) {
      const outcome = await this.watchOnce(rv).catch(() => "broken" as const);
      if (!this.running) return;
      if (outcome === "gone") {
        this.watchGone++;
        const list = await this.call("GET", `/api/v1/namespaces/${this.namespace}/configmaps`).catch(
          () => undefined,
        );
        if (!list || list.status !== 200) {
          await new Promise((r) => setTimeout(r, 200));
          continue;
        }
        rv = Number((list.json["metadata"] as { resourceVersion: string }).resourceVersion);
        this.segments.push({ from: rv, rvs: [] });
      } else {
        this.watchRestarts++;
        rv = this.watchedRv;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /** One watch request; resolves when it ends: "gone" on a 410, else "ended". */
  private watchOnce(rv: number): Promise<"gone" | "ended"> {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: this.port,
          path: `/api/v1/namespaces/${this.namespace}/configmaps?watch=true&resourceVersion=${rv}&allowWatchBookmarks=true`,
          ...this.tls,
          agent: false,
        },
        (res) => {
          if (res.statusCode === 410) {
            res.resume();
            return resolve("gone");
          }
          let buf = "";
          let gone = false;
          res.on("data", (c: Buffer) => {
            buf += c.toString();
            let i;
            while ((i = buf.indexOf("\n")) >= 0) {
              const line = buf.slice(0, i);
              buf = buf.slice(i + 1);
              if (!line.trim()) continue;
              const ev = JSON.parse(line) as {
                type: string;
                object: { code?: number; metadata?: { resourceVersion?: string } };
              };
              if (ev.type === "ERROR") {
                if (ev.object.code === 410) gone = true;
                continue;
              }
              if (ev.type !== "ADDED" && ev.type !== "MODIFIED" && ev.type !== "DELETED") continue;
              const seg = this.segments[this.segments.length - 1]!;
              const seenRv = Number(ev.object.metadata?.resourceVersion);
              seg.rvs.push(seenRv);
              if (!this.seenAt.has(seenRv)) this.seenAt.set(seenRv, Date.now());
            }
          });
          res.on("end", () => resolve(gone ? "gone" : "ended"));
          res.on("error", reject);
          res.on("close", () => resolve(gone ? "gone" : "ended"));
        },
      );
      this.watchReq = req;
      req.on("error", reject);
      req.end();
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    this.watchReq?.destroy();
    await Promise.all(this.loops);
    this.agent.destroy();
  }

  /** Longest time between two acknowledged creates within [from, to] (ms). */
  gapMs(from: number, to: number): number {
    const at = [from, ...this.acks.filter((a) => a.at >= from && a.at <= to).map((a) => a.at), to];
    let gap = 0;
    for (let i = 1; i < at.length; i++) gap = Math.max(gap, at[i]! - at[i - 1]!);
    return gap;
  }

  /** Longest time from a create's acknowledgement (within [from, to]) to the watch delivering it (ms). */
  watchLagMs(from: number, to: number): number {
    let lag = 0;
    for (const a of this.acks)
      if (a.at >= from && a.at <= to) lag = Math.max(lag, (this.seenAt.get(a.rv) ?? Infinity) - a.at);
    return lag;
  }

  /**
   * Watch findings: RVs that went backwards or repeated, and acknowledged writes a segment skipped
   * (inside (from, last seen] and not delivered).
   */
  watchProblems(): string[] {
    const problems: string[] = [];
    for (const seg of this.segments) {
      for (let i = 1; i < seg.rvs.length; i++)
        if (seg.rvs[i]! <= seg.rvs[i - 1]!) problems.push(`rv ${seg.rvs[i]} after ${seg.rvs[i - 1]}`);
      const last = seg.rvs[seg.rvs.length - 1] ?? seg.from;
      const seen = new Set(seg.rvs);
      for (const a of this.acks)
        if (a.rv > seg.from && a.rv <= last && !seen.has(a.rv))
          problems.push(`${a.name} (rv ${a.rv}) skipped`);
    }
    return problems;
  }

  /** Acknowledged creates that are not in the API now. */
  async lost(): Promise<string[]> {
    const names = new Set<string>();
    let cont = "";
    do {
      const r = await this.call(
        "GET",
        `/api/v1/namespaces/${this.namespace}/configmaps?limit=500${cont ? `&continue=${encodeURIComponent(cont)}` : ""}`,
      );
      if (r.status !== 200) throw new Error(`listing ${this.namespace}/configmaps: ${r.status}`);
      for (const i of r.json["items"] as { metadata: { name: string } }[]) names.add(i.metadata.name);
      cont = (r.json["metadata"] as { continue?: string }).continue ?? "";
    } while (cont);
    return this.acks.filter((a) => !names.has(a.name)).map((a) => a.name);
  }
}
