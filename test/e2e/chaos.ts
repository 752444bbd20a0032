/**
 * The chaos run's instruments (issue 17), used by the cluster suite: a background kubectl workload
 * through the lab's kubeconfig (the VIP) and the crash count of a node's journal.
 *
 * The workload: one create after another (a ConfigMap each, labelled with the run), a list every
 * few seconds, and a `kubectl get -w` that is started again whenever it ends. Per fault it answers:
 * - the API gap: the longest time between two acknowledged creates in a window;
 * - acknowledged writes lost: acked names that a later list does not show;
 * - stale lists: a list that misses a create acknowledged before the list started;
 * - the watch: every acked name must reach it (a restarted `get -w` lists first, then watches).
 */
import { execa, type ResultPromise } from "execa";

/** What the e2e lab gives the workload: its kubeconfig (whose server is the VIP). */
export interface WorkloadTarget {
  kubeconfig: string;
}

/** One create's request limit: a request to a dead VIP holder fails after this and is retried. */
const CREATE_TIMEOUT_S = 5;
/** A pause between creates, so the workload is a steady trickle and not a busy loop. */
const CREATE_EVERY_MS = 500;
const LIST_EVERY_MS = 5_000;

export class KubectlWorkload {
  readonly run: string;
  /** Acknowledged creates: name and the host time its kubectl exited 0. */
  readonly acked: { name: string; at: number }[] = [];
  attempts = 0;
  failedCreates = 0;
  listsOk = 0;
  listsFailed = 0;
  /** Lists that missed a create acknowledged before the list started (name, list start time). */
  readonly staleLists: { missing: string[]; at: number }[] = [];
  /** Names the watch printed. */
  readonly watched = new Set<string>();
  watchStarts = 0;
  private stopped = false;
  private loops: Promise<void>[] = [];
  private watcher: ResultPromise | undefined;
  private n = 0;

  constructor(
    private readonly target: WorkloadTarget,
    run = `chaos${Date.now().toString(36)}`,
  ) {
    this.run = run;
  }

  private kubectl(args: string[], opts: { input?: string; timeoutS: number }) {
    return execa(
      "kubectl",
      ["--kubeconfig", this.target.kubeconfig, `--request-timeout=${opts.timeoutS}s`, ...args],
      {
        reject: false,
        // kubectl's own limit bounds dial, TLS and answer; this one bounds kubectl itself.
        timeout: (opts.timeoutS + 10) * 1000,
        ...(opts.input !== undefined ? { input: opts.input } : {}),
      },
    );
  }

  start(): void {
    this.loops = [this.createLoop(), this.listLoop(), this.watchLoop()];
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.kill("SIGTERM");
    await Promise.all(this.loops);
  }

  private async createLoop(): Promise<void> {
    while (!this.stopped) {
      const name = `${this.run}-${++this.n}`;
      const cm = {
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name, namespace: "default", labels: { "chaos-run": this.run } },
        data: { n: String(this.n) },
      };
      this.attempts++;
      const r = await this.kubectl(["create", "-f", "-", "-o", "name"], {
        input: JSON.stringify(cm),
        timeoutS: CREATE_TIMEOUT_S,
      });
      if (r.exitCode === 0) this.acked.push({ name, at: Date.now() });
      else this.failedCreates++;
      await pause(r.exitCode === 0 ? CREATE_EVERY_MS : 250);
    }
  }

  /** The names a list of the run's ConfigMaps shows now (undefined when the list failed). */
  async list(timeoutS = 20): Promise<Set<string> | undefined> {
    const r = await this.kubectl(
      ["get", "configmaps", "-n", "default", "-l", `chaos-run=${this.run}`, "-o", "name"],
      { timeoutS },
    );
    if (r.exitCode !== 0) return undefined;
    return new Set(
      r.stdout
        .split("\n")
        .map((s) => s.trim().replace(/^configmap\//, ""))
        .filter(Boolean),
    );
  }

  private async listLoop(): Promise<void> {
    while (!this.stopped) {
      const before = this.acked.map((a) => a.name);
      const at = Date.now();
      const names = await this.list(CREATE_TIMEOUT_S * 2);
      if (!names) this.listsFailed++;
      else {
        this.listsOk++;
        const missing = before.filter((n) => !names.has(n));
        if (missing.length) this.staleLists.push({ missing, at });
      }
      await pause(LIST_EVERY_MS);
    }
  }

  private async watchLoop(): Promise<void> {
    while (!this.stopped) {
      this.watchStarts++;
      const w = execa(
        "kubectl",
        [
          "--kubeconfig",
          this.target.kubeconfig,
          "--request-timeout=0",
          "get",
          "configmaps",
          "-n",
          "default",
          "-l",
          `chaos-run=${this.run}`,
          "-w",
          "-o",
          "name",
        ],
        { reject: false, buffer: false },
      );
      this.watcher = w;
      let tail = "";
      w.stdout.on("data", (chunk: Buffer) => {
        const lines = (tail + chunk.toString()).split("\n");
        tail = lines.pop() ?? "";
        for (const l of lines) {
          const name = l.trim().replace(/^configmap\//, "");
          if (name) this.watched.add(name);
        }
      });
      await w;
      if (!this.stopped) await pause(1_000);
    }
  }

  /**
   * The longest time without an acknowledged create in [from, to]: from the last ack at or before
   * `from` (or `from` itself) through every ack in the window to `to`.
   */
  gap(from: number, to = Date.now()): number {
    const times = this.acked.map((a) => a.at);
    let prev = from;
    for (const t of times) if (t <= from) prev = t;
    let longest = 0;
    for (const t of times) {
      if (t <= from || t > to) continue;
      longest = Math.max(longest, t - prev);
      prev = t;
    }
    return Math.max(longest, to - prev);
  }

  /** Acks after `since`. */
  acksSince(since: number): number {
    return this.acked.filter((a) => a.at > since).length;
  }

  /** Acked names a fresh list does not show; throws when the list fails. */
  async lost(): Promise<string[]> {
    const acked = this.acked.map((a) => a.name);
    const names = await this.list();
    if (!names) throw new Error("listing the workload's ConfigMaps failed");
    return acked.filter((n) => !names.has(n));
  }

  /** Acked names the watch has not shown. */
  unwatched(): string[] {
    return this.acked.map((a) => a.name).filter((n) => !this.watched.has(n));
  }

  summary(): string {
    return (
      `${this.acked.length} acked of ${this.attempts} creates, ${this.listsOk} lists ok / ` +
      `${this.listsFailed} failed, ${this.staleLists.length} stale, watch started ${this.watchStarts}x, ` +
      `saw ${this.watched.size}`
    );
  }
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Lines of a journal that mean a process of ours crashed: an uncaught exception's trace or node's
 * fatal markers (not logged errors: test/helpers/fault-load.ts crashLines also counts those, for a
 * process's stderr).
 */
export function journalCrashLines(journal: string): string[] {
  return journal.split("\n").filter(
    (l) =>
      /Uncaught|triggerUncaughtException|FATAL ERROR|Segmentation fault|core dumped/.test(l) ||
      // A stack frame: "    at fn (file:///opt/lab/lib/lab-server.mjs:123:45)" (journal prefix before).
      /\bat (?:\S+ \()?(?:file:\/\/|node:|\/)\S+:\d+:\d+\)?\s*$/.test(l),
  );
}

/** Main-process exits systemd logged for a unit (its restarts), from `journalctl -o cat` lines. */
export function unitExits(journal: string, unit: string): string[] {
  return journal.split("\n").filter((l) => l.includes(`${unit}: Main process exited`));
}

/** A root shell script on a lab node: its stdout and exit code (the e2e and the bench give one). */
export type NodeShell = (node: string, script: string) => Promise<{ stdout: string; exitCode?: number }>;

/** Which of `masters` holds `vip` on an interface (undefined when none answers with it). */
export async function vipHolder(sh: NodeShell, masters: string[], vip: string): Promise<string | undefined> {
  for (const node of masters) {
    const r = await sh(node, "ip -o -4 addr show").catch(() => undefined);
    if (r?.stdout.includes(` ${vip}/`)) return node;
  }
  return undefined;
}

/**
 * The master whose etcd member leads now, asked through etcdctl on `via` with lab-server's etcd
 * client certificate; `nodeOf` maps a member's address to its node.
 */
export async function etcdLeaderOf(
  sh: NodeShell,
  via: string,
  files: { etcdCA: string; etcdCert: string; etcdKey: string },
  nodeOf: (address: string) => string | undefined,
): Promise<string | undefined> {
  const r = await sh(
    via,
    `ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=${files.etcdCA} --cert=${files.etcdCert} ` +
      `--key=${files.etcdKey} --command-timeout=10s endpoint status --cluster -w json`,
  ).catch(() => undefined);
  // Member ids are uint64: compared as text, not through JSON.parse.
  for (const part of (r?.stdout ?? "").split('{"Endpoint":').slice(1)) {
    const ep = /^"https:\/\/([\d.]+):/.exec(part)?.[1];
    const id = /"member_id":(\d+)/.exec(part)?.[1];
    const leader = /"leader":(\d+)/.exec(part)?.[1];
    if (ep && id && id === leader) return nodeOf(ep);
  }
  return undefined;
}
