/**
 * A real three-member etcd (Debian's /usr/bin/etcd) on free loopback ports, client TLS with the
 * test PKI, for fault injection: SIGSTOP/SIGCONT, SIGKILL and restart (same data dir), moving the
 * leader, and a TCP proxy per member that can delay everything it forwards (a slow etcd).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { freePort } from "./etcd.ts";
import type { TestPki } from "./test-pki.ts";

/** Forwards one TCP port to another; every chunk waits `delayMs` first (order kept). */
export class DelayProxy {
  delayMs = 0;
  port = 0;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly targetPort: number) {}

  async start(): Promise<void> {
    this.server = createServer((client) => {
      const up = connect(this.targetPort, "127.0.0.1");
      for (const s of [client, up]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => undefined);
      }
      const pipe = (from: Socket, to: Socket): void => {
        // a chain of timers keeps the chunks in order even when delayMs changes
        let last = 0;
        from.on("data", (d: Buffer) => {
          const at = Math.max(Date.now() + this.delayMs, last);
          last = at;
          const send = (): void => void (to.destroyed || to.write(d));
          if (at <= Date.now()) send();
          else setTimeout(send, at - Date.now());
        });
        from.on("close", () => {
          const wait = Math.max(0, last - Date.now());
          setTimeout(() => to.destroy(), wait);
        });
      };
      pipe(client, up);
      pipe(up, client);
    });
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", r));
    const addr = this.server.address();
    this.port = typeof addr === "object" && addr ? addr.port : 0;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

export interface ClusterMember {
  name: string;
  clientPort: number;
  peerPort: number;
  metricsPort: number;
  /** https://127.0.0.1:clientPort */
  url: string;
  proxy: DelayProxy;
  proc: ChildProcess | undefined;
  log: string;
}

export interface EtcdClusterOptions {
  pki: TestPki;
  /** --experimental-watch-progress-notify-interval (etcd default: 10 m). */
  progressNotifyInterval?: string;
}

export class EtcdCluster {
  readonly members: ClusterMember[] = [];
  private dir = "";
  private client: { cert: string; key: string } | undefined;

  private constructor(private readonly opts: EtcdClusterOptions) {}

  static async start(opts: EtcdClusterOptions): Promise<EtcdCluster> {
    const c = new EtcdCluster(opts);
    await c.init();
    return c;
  }

  /** Client URLs through the proxies (what lab-server gets). */
  get proxiedUrls(): string[] {
    return this.members.map((m) => `https://127.0.0.1:${m.proxy.port}`);
  }

  get urls(): string[] {
    return this.members.map((m) => m.url);
  }

  /** Client certificate and key for etcd (any certificate the test CA signed). */
  get clientCert(): { cert: string; key: string } {
    return this.client!;
  }

  private async init(): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), "lab-etcd-cluster-"));
    this.client = await this.opts.pki.client("etcd-client", "lab-server", []);
    for (let i = 0; i < 3; i++) {
      const clientPort = await freePort();
      const proxy = new DelayProxy(clientPort);
      await proxy.start();
      this.members.push({
        name: `m${i}`,
        clientPort,
        peerPort: await freePort(),
        metricsPort: await freePort(),
        url: `https://127.0.0.1:${clientPort}`,
        proxy,
        proc: undefined,
        log: "",
      });
    }
    for (let i = 0; i < 3; i++) this.spawn(i);
    await this.waitHealthy(30_000);
  }

  private spawn(i: number): void {
    const m = this.members[i]!;
    const cluster = this.members.map((x) => `${x.name}=http://127.0.0.1:${x.peerPort}`).join(",");
    const { pki } = this.opts;
    const proc = spawn(
      "/usr/bin/etcd",
      [
        `--name=${m.name}`,
        `--data-dir=${join(this.dir, m.name)}`,
        `--listen-client-urls=${m.url}`,
        `--advertise-client-urls=${m.url}`,
        `--listen-peer-urls=http://127.0.0.1:${m.peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${m.peerPort}`,
        `--listen-metrics-urls=http://127.0.0.1:${m.metricsPort}`,
        `--initial-cluster=${cluster}`,
        "--initial-cluster-state=new",
        "--initial-cluster-token=lab-fault",
        `--cert-file=${pki.serverCert}`,
        `--key-file=${pki.serverKey}`,
        `--trusted-ca-file=${pki.caCert}`,
        "--client-cert-auth",
        ...(this.opts.progressNotifyInterval
          ? [`--experimental-watch-progress-notify-interval=${this.opts.progressNotifyInterval}`]
          : []),
        "--log-level=error",
        "--logger=zap",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    proc.stderr?.on("data", (d: Buffer) => (m.log = (m.log + d.toString()).slice(-20_000)));
    m.proc = proc;
  }

  /** Every member answers /health with health true; fails naming the members that do not. */
  async waitHealthy(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      const sick: string[] = [];
      await Promise.all(
        this.members.map(async (m) => {
          const ok = await fetch(`http://127.0.0.1:${m.metricsPort}/health`, {
            signal: AbortSignal.timeout(1000),
          })
            .then(async (r) => r.ok && ((await r.json()) as { health?: string }).health === "true")
            .catch(() => false);
          if (!ok) sick.push(m.name);
        }),
      );
      if (sick.length === 0) return;
      if (Date.now() > deadline)
        throw new Error(
          `etcd members ${sick.join(", ")} not healthy after ${ms} ms: ${sick.map((n) => this.members.find((m) => m.name === n)!.log.slice(-500)).join(" | ")}`,
        );
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  signal(i: number, sig: NodeJS.Signals): void {
    this.members[i]!.proc?.kill(sig);
  }

  async kill(i: number): Promise<void> {
    const proc = this.members[i]!.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGCONT");
    proc.kill("SIGKILL");
    await exited;
  }

  /** Starts a killed member again on its data dir. */
  restart(i: number): void {
    this.spawn(i);
  }

  async etcdctl(args: string[]): Promise<string> {
    const r = await execa(
      "etcdctl",
      [
        `--cacert=${this.opts.pki.caCert}`,
        `--cert=${this.client!.cert}`,
        `--key=${this.client!.key}`,
        "--command-timeout=5s",
        ...args,
      ],
      { env: { ETCDCTL_API: "3" }, timeout: 15_000, reject: false },
    );
    if (r.exitCode !== 0) throw new Error(`etcdctl ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  }

  /** Index of the leader and the members' ids (hex), from `etcdctl endpoint status`. */
  async status(): Promise<{ leader: number; ids: string[] }> {
    const out = await this.etcdctl([
      `--endpoints=${this.urls.join(",")}`,
      "endpoint",
      "status",
      "-w",
      "json",
    ]);
    // member ids are uint64, beyond what JSON.parse keeps exact: read them from the text
    const ids = this.urls.map(() => "");
    let leader = "";
    for (const row of out.split('{"Endpoint":').slice(1)) {
      const endpoint = /^"([^"]+)"/.exec(row)?.[1] ?? "";
      const member = /"member_id":(\d+)/.exec(row)?.[1];
      const lead = /"leader":(\d+)/.exec(row)?.[1];
      const i = this.urls.indexOf(endpoint);
      if (i >= 0 && member) ids[i] = BigInt(member).toString(16);
      if (lead) leader = BigInt(lead).toString(16);
    }
    return { leader: ids.indexOf(leader), ids };
  }

  /** Hands leadership from the current leader to member `to`; returns the old leader's index. */
  async moveLeader(to: number): Promise<number> {
    const { leader, ids } = await this.status();
    await this.etcdctl([`--endpoints=${this.urls[leader]}`, "move-leader", ids[to]!]);
    return leader;
  }

  setDelay(ms: number): void {
    for (const m of this.members) m.proxy.delayMs = ms;
  }

  async destroy(): Promise<void> {
    for (let i = 0; i < this.members.length; i++) await this.kill(i);
    for (const m of this.members) await m.proxy.stop();
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}
