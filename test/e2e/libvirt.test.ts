/**
 * A libvirt lab end to end through the real `lab` process and the machine's libvirtd (TCG): two
 * domains boot the built image and accept SSH with their pinned host keys, virsh shows them with
 * the lab's marker, a second `up` adopts them, and `lab down` removes domains, volumes, the
 * network, the pool and the lab's files.
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const repo = resolve(import.meta.dirname, "../..");
const labBin = join(repo, "bin/lab.js");
const name = `lv${process.pid % 100000}`;
const URI = "qemu:///system";
// Shared with the qemu suite, so CI builds the image once.
const imageCache = process.env.LAB_IMAGE_CACHE || "/var/tmp/lab-image-cache";
let home = "";
let dir = "";

const env = () => ({ ...process.env, LAB_HOME: home, LAB_IMAGE_CACHE: imageCache, LAB_SSH_TIMEOUT: "420" });
const lab = (args: string[], opts: { reject?: boolean } = {}) =>
  execa(process.execPath, [labBin, ...args], { cwd: dir, env: env(), reject: opts.reject ?? true });
const virsh = (...args: string[]) => execa("virsh", ["-q", "-c", URI, ...args]);
const jsonLines = (out: string) =>
  out
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

/** `lab up --machines-only` through the CLI: this suite is about the machines, not the bootstrap. */
async function labUp(): Promise<Record<string, unknown>[]> {
  const r = await lab(["--json", "up", "--machines-only"], { reject: false });
  if (r.exitCode !== 0) throw new Error(`lab up failed (exit ${r.exitCode}):\n${r.stdout}\n${r.stderr}`);
  return jsonLines(r.stdout);
}

async function leftovers(): Promise<string[]> {
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
  if (existsSync(join(home, "labs", name))) found.push(`state ${join(home, "labs", name)}`);
  return found;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lab-e2e-libvirt-"));
  home = join(dir, "home");
  await execa(join(repo, "scripts/start-libvirtd.sh"));
  await writeFile(
    join(dir, "lab.yaml"),
    `apiVersion: lab/v1alpha1
kind: Lab
metadata:
  name: ${name}
spec:
  provider:
    type: libvirt
    uri: ${URI}
  resources:
    cpus: 1
    memory: 768Mi
    disk: 4Gi
  masters:
    count: 1
  workers:
    count: 1
`,
  );
});

afterAll(async () => {
  if (dir) {
    await lab(["down", name], { reject: false });
    await rm(dir, { recursive: true, force: true });
  }
});

describe("libvirt provisioner (real libvirtd, TCG)", () => {
  it("lab up boots two domains that accept SSH with their pinned host keys", async () => {
    const t0 = Date.now();
    const events = await labUp();
    const ready = events.filter((e) => e.step === "vm.ssh-ready" && e.state === "done");
    expect(ready.map((e) => e.node).sort()).toEqual(["master-1", "worker-1"]);
    console.log(`libvirt lab up (2 domains, TCG) took ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    const machines = JSON.parse(await readFile(join(home, "labs", name, "machines.json"), "utf8")) as {
      name: string;
      address: string;
      ssh: { user: string; privateKeyPath: string };
    }[];
    const knownHosts = join(home, "labs", name, "ssh", "known_hosts");
    for (const m of machines) {
      const r = await execa("ssh", [
        ...["-i", m.ssh.privateKeyPath, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"],
        ...["-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${knownHosts}`],
        `${m.ssh.user}@${m.address}`,
        "hostname",
      ]);
      expect(r.stdout.trim()).toBe(m.name);
    }
    const worker = machines.find((m) => m.name === "worker-1")!;
    const ping = await lab(["ssh", "master-1", "--", "ping", "-c", "1", "-W", "5", worker.address]);
    expect(ping.stdout).toContain("1 received");
  });

  it("virsh lists them, running, with the lab's marker", async () => {
    const running = (await virsh("list", "--name")).stdout.split("\n");
    for (const node of ["master-1", "worker-1"]) {
      const domain = `lab-${name}-${node}`;
      expect(running).toContain(domain);
      const xml = (await virsh("dumpxml", domain)).stdout;
      expect(xml).toMatch(new RegExp(`<\\w+:node xmlns:\\w+="[^"]+" lab="${name}" node="${node}"`));
    }
    const vols = (await virsh("vol-list", "--pool", `lab-${name}`)).stdout;
    for (const v of ["base.qcow2", "master-1.qcow2", "worker-1.qcow2", "master-1-seed.img"])
      expect(vols).toContain(v);
  });

  it("lab status shows both running; a second up adopts them", async () => {
    const status = JSON.parse((await lab(["--json", "status", name])).stdout) as {
      machines: { name: string; state: string }[];
    };
    expect(status.machines.map((m) => [m.name, m.state])).toEqual([
      ["master-1", "running"],
      ["worker-1", "running"],
    ]);
    const again = await labUp();
    expect(again.filter((e) => e.step === "vm.start").map((e) => [e.node, e.state])).toEqual([
      ["master-1", "skipped"],
      ["worker-1", "skipped"],
    ]);
  });

  it("lab down removes domains, volumes, network, pool and files; a second down is a no-op", async () => {
    await lab(["down", name]);
    expect(await leftovers()).toEqual([]);
    await lab(["down", name]);
    expect(await leftovers()).toEqual([]);
  });
});
