/**
 * What every VM suite needs: a lab in its own temp dir driven through the real `lab` process and
 * stock kubectl, polling with a deadline, the leftovers check after `lab down`, and the timing
 * report (test-results/e2e-timings.{txt,json}, one section per suite, printed by .ci/run).
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa, type ResultPromise } from "execa";
import { expect } from "vitest";
import { stringify } from "yaml";

export const repo = resolve(import.meta.dirname, "../..");
export const labBin = join(repo, "bin/lab.js");
// Shared across suites and runs so CI (and developers) build the image once.
export const imageCache = process.env.LAB_IMAGE_CACHE || "/var/tmp/lab-image-cache";

/** What the machines of the small e2e labs get: nspawn machines share the host's kernel, VMs boot under TCG. */
export const NSPAWN_RESOURCES = { cpus: 1, memory: "1Gi" };
export const VM_RESOURCES = { cpus: 1, memory: "768Mi", disk: "4Gi" };

/** A topology of `masters` + `workers` machines; `name` defaults to `NAME`, which {@link E2eLab.create} replaces. */
export function labTopology(o: {
  provider: { type: string; uri?: string };
  resources: Record<string, string | number>;
  masters: number;
  workers: number;
  name?: string;
}): string {
  return stringify({
    apiVersion: "lab/v1alpha1",
    kind: "Lab",
    metadata: { name: o.name ?? "NAME" },
    spec: {
      provider: o.provider,
      resources: o.resources,
      masters: { count: o.masters },
      workers: { count: o.workers },
    },
  });
}

/** A small lab of nspawn machines. */
export const nspawnTopology = (masters: number, workers: number, name = "NAME"): string =>
  labTopology({ provider: { type: "nspawn" }, resources: NSPAWN_RESOURCES, masters, workers, name });

/** libvirt's own leftovers of lab `name` on the local libvirtd: domains, network, pool and its directory. */
export async function libvirtLeftovers(name: string): Promise<string[]> {
  const virsh = (...args: string[]) => execa("virsh", ["-q", "-c", "qemu:///system", ...args]);
  const found: string[] = [];
  const domains = (await virsh("list", "--all", "--name")).stdout.split("\n").filter(Boolean);
  for (const d of domains) {
    const xml = (await virsh("dumpxml", "--inactive", d).catch(() => ({ stdout: "" }))).stdout;
    if (xml.includes(`lab="${name}"`) || d.startsWith(`lab-${name}-`)) found.push(`domain ${d}`);
  }
  const nets = (await virsh("net-list", "--all", "--name")).stdout.split("\n");
  if (nets.includes(`lab-${name}`)) found.push(`network lab-${name}`);
  const pools = (await virsh("pool-list", "--all", "--name")).stdout.split("\n");
  if (pools.includes(`lab-${name}`)) found.push(`pool lab-${name}`);
  if (existsSync(`/var/lib/libvirt/images/lab-${name}`)) found.push("pool directory");
  return found;
}

export interface RunOpts {
  reject?: boolean;
  input?: string;
  timeoutMs?: number;
}

export interface Machine {
  name: string;
  address: string;
  ssh: { user: string; privateKeyPath: string };
}

/** A lab of one suite: its name, temp dir, LAB_HOME and kubeconfig; `remove()` in afterAll. */
export class E2eLab {
  readonly kubeconfig: string;
  readonly home: string;

  private constructor(
    readonly name: string,
    readonly dir: string,
  ) {
    this.home = join(dir, "home");
    this.kubeconfig = join(dir, "kubeconfig");
  }

  /** A temp dir holding `lab.yaml` (the topology, `NAME` replaced by the lab name). */
  static async create(prefix: string, topology: string): Promise<E2eLab> {
    const name = `${prefix}${process.pid % 100000}`;
    const dir = await mkdtemp(join(tmpdir(), `lab-e2e-${prefix}-`));
    await writeFile(join(dir, "lab.yaml"), topology.replaceAll("NAME", name));
    return new E2eLab(name, dir);
  }

  /** A lab already up (for developing scenarios): DIR holds its lab.yaml, DIR/home its LAB_HOME. */
  static attach(dir: string): E2eLab {
    const name = /^\s*name:\s*(\S+)/m.exec(readFileSync(join(dir, "lab.yaml"), "utf8"))![1]!;
    const l = new E2eLab(name, dir);
    return l;
  }

  env(): Record<string, string | undefined> {
    return { ...process.env, LAB_HOME: this.home, LAB_IMAGE_CACHE: imageCache, LAB_SSH_TIMEOUT: "420" };
  }

  /** `lab ARGS` in the lab's dir; rejects on a non-zero exit unless `reject: false`. */
  lab(args: string[], opts: RunOpts = {}) {
    return execa(process.execPath, [labBin, ...args], {
      cwd: this.dir,
      env: this.env(),
      reject: opts.reject ?? true,
      ...(opts.input !== undefined ? { input: opts.input } : {}),
      ...(opts.timeoutMs ? { timeout: opts.timeoutMs } : {}),
    });
  }

  /** `lab --json up --machines-only` (of `file`, if given): its events; throws with its output when it fails. */
  async upMachines(file?: string): Promise<Record<string, unknown>[]> {
    const r = await this.lab(["--json", "up", "--machines-only", ...(file ? ["-f", file] : [])], {
      reject: false,
    });
    if (r.exitCode !== 0) throw new Error(`lab up failed (exit ${r.exitCode}):\n${r.stdout}\n${r.stderr}`);
    return jsonLines(r.stdout);
  }

  /** What `lab --json status` says of each machine: `[name, state]`. */
  async machineStates(): Promise<[string, string][]> {
    const status = JSON.parse((await this.lab(["--json", "status", this.name])).stdout) as {
      machines: { name: string; state: string }[];
    };
    return status.machines.map((m) => [m.name, m.state]);
  }

  /** `lab ARGS` as a running child (for streaming its output or killing it mid-way). */
  spawnLab(args: string[]): ResultPromise<{ reject: false }> {
    return execa(process.execPath, [labBin, ...args], { cwd: this.dir, env: this.env(), reject: false });
  }

  kubectl(args: string[], opts: RunOpts = {}) {
    return execa("kubectl", ["--kubeconfig", this.kubeconfig, "--request-timeout=20s", ...args], {
      reject: opts.reject ?? true,
      ...(opts.input !== undefined ? { input: opts.input } : {}),
      ...(opts.timeoutMs ? { timeout: opts.timeoutMs } : {}),
    });
  }

  /** `kubectl ... -o json`, parsed. */
  async kubectlJson<T>(args: string[]): Promise<T> {
    return JSON.parse((await this.kubectl([...args, "-o", "json"])).stdout) as T;
  }

  /** A shell command on a node through `lab ssh NODE -- sh -c CMD`. */
  ssh(node: string, cmd: string, opts: RunOpts = {}) {
    return this.lab(["ssh", node, "--", "sh", "-c", cmd], opts);
  }

  async machines(): Promise<Machine[]> {
    return JSON.parse(
      await readFile(join(this.home, "labs", this.name, "machines.json"), "utf8"),
    ) as Machine[];
  }

  /** What `lab down` must have removed: processes, netns, links (by alias) and the state dir. */
  async leftovers(): Promise<string[]> {
    const found: string[] = [];
    for (const pid of (await readdir("/proc")).filter((e) => /^\d+$/.test(e))) {
      const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
      if (cmd.includes(`lab:${this.name}/`))
        found.push(`process ${pid}: ${cmd.split("\0").slice(0, 3).join(" ")}`);
    }
    if (existsSync(`/run/netns/lab-${this.name}`)) found.push(`netns lab-${this.name}`);
    const links = JSON.parse((await execa("ip", ["-j", "link", "show"])).stdout) as {
      ifname: string;
      ifalias?: string;
    }[];
    for (const l of links) if (l.ifalias === `lab:${this.name}`) found.push(`link ${l.ifname}`);
    if (existsSync(join(this.home, "labs", this.name)))
      found.push(`state ${join(this.home, "labs", this.name)}`);
    return found;
  }

  /** afterAll: `lab down` (even after a failure) and the temp dir. */
  async remove(): Promise<void> {
    await this.lab(["down", this.name], { reject: false });
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** JSON lines of an output; a stream still being read may end mid-line, so its tail is skipped. */
export const jsonLines = (out: string, streaming = false): Record<string, unknown>[] =>
  out
    .split("\n")
    .slice(0, streaming ? -1 : undefined)
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

/** The `vm.start` step of each node in a `lab --json up`'s events: `[node, state]`. */
const vmStartStates = (events: Record<string, unknown>[]): [unknown, unknown][] =>
  events.filter((e) => e.step === "vm.start").map((e) => [e.node, e.state]);

/** `lab status` shows master-1 and worker-1 running, and a second `up` adopts both (skips their vm.start). */
export async function expectRunningThenAdopted(
  l: E2eLab,
  up: () => Promise<Record<string, unknown>[]>,
): Promise<void> {
  expect(await l.machineStates()).toEqual([
    ["master-1", "running"],
    ["worker-1", "running"],
  ]);
  expect(vmStartStates(await up())).toEqual([
    ["master-1", "skipped"],
    ["worker-1", "skipped"],
  ]);
}

/** Polls `fn` every `everyMs` until it returns something other than undefined; throws at the deadline. */
export async function until<T>(
  what: string,
  timeoutMs: number,
  fn: () => Promise<T | undefined>,
  everyMs = 2_000,
): Promise<T> {
  const started = Date.now();
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() - started > timeoutMs)
      throw new Error(`${what}: not within ${timeoutMs / 1000} s${last ? ` (${String(last)})` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const seconds = (ms: number): number => Math.round(ms / 100) / 10;

/**
 * The timing rows of one suite. `write()` merges them as the suite's section into
 * test-results/e2e-timings.json and regenerates the table in e2e-timings.txt from every section.
 */
export class Timings {
  readonly rows: [string, number][] = [];
  /** Counted figures (acked writes lost, crashes...), printed as integers after the seconds. */
  readonly counts: [string, number][] = [];

  constructor(
    readonly suite: string,
    readonly title: string,
  ) {}

  add(what: string, ms: number): void {
    this.rows.push([what, seconds(ms)]);
  }

  count(what: string, n: number): void {
    this.counts.push([what, n]);
  }

  /** Runs `fn` and records how long it took (also when it throws, marked "(failed)"). */
  async time<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const t0 = Date.now();
    try {
      const v = await fn();
      this.add(what, Date.now() - t0);
      return v;
    } catch (err) {
      this.add(`${what} (failed)`, Date.now() - t0);
      throw err;
    }
  }

  async write(): Promise<void> {
    if (!this.rows.length && !this.counts.length) return;
    const out = join(repo, "test-results");
    await mkdir(out, { recursive: true });
    type Section = { title: string; seconds: Record<string, number>; counts?: Record<string, number> };
    const all = (await readFile(join(out, "e2e-timings.json"), "utf8")
      .then((t) => JSON.parse(t) as Record<string, Section>)
      .catch(() => ({}))) as Record<string, Section>;
    // Object.fromEntries keeps the first occurrence order; duplicate names get a counter.
    const byName = (rows: [string, number][]) => {
      const named: Record<string, number> = {};
      for (const [w, s] of rows) {
        let key = w;
        for (let i = 2; key in named; i++) key = `${w} #${i}`;
        named[key] = s;
      }
      return named;
    };
    all[this.suite] = {
      title: this.title,
      seconds: byName(this.rows),
      ...(this.counts.length ? { counts: byName(this.counts) } : {}),
    };
    await writeFile(join(out, "e2e-timings.json"), JSON.stringify(all, null, 2) + "\n");
    const tables = Object.values(all).map((sec) => {
      const entries = Object.entries(sec.seconds);
      const counts = Object.entries(sec.counts ?? {});
      const width = Math.max(...[...entries, ...counts].map(([w]) => w.length));
      return [
        `${sec.title} — seconds`,
        ...entries.map(([w, s]) => `  ${w.padEnd(width)}  ${s.toFixed(1).padStart(7)}`),
        ...(counts.length ? [`${sec.title} — counts`] : []),
        ...counts.map(([w, n]) => `  ${w.padEnd(width)}  ${String(n).padStart(7)}`),
      ].join("\n");
    });
    await writeFile(join(out, "e2e-timings.txt"), tables.join("\n\n") + "\n");
  }
}
