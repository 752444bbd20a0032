/**
 * A libvirt lab on a "remote" hypervisor, end to end through the real `lab` process: the URI is
 * qemu+ssh to this machine's libvirtd through a real sshd on loopback (its own host key, pinned
 * through known_hosts). Two domains boot the built image; `lab` reaches them only as machines
 * behind the hypervisor jump (sshd's log shows each forwarded connection), with pinned host keys;
 * `lab down` removes everything.
 *
 * What this does not prove: the hypervisor is this machine, so its lab bridge would also be
 * reachable directly; the test asserts the jump was used, not that nothing else could work.
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLoopbackHypervisor, type LoopbackHypervisor } from "../support/loopback-sshd.ts";

const repo = resolve(import.meta.dirname, "../..");
const labBin = join(repo, "bin/lab.js");
const name = `lvr${process.pid % 100000}`;
// Shared with the qemu suite, so CI builds the image once.
const imageCache = process.env.LAB_IMAGE_CACHE || "/var/tmp/lab-image-cache";
let home = "";
let dir = "";
let hv: LoopbackHypervisor | undefined;

const env = () => ({ ...process.env, LAB_HOME: home, LAB_IMAGE_CACHE: imageCache, LAB_SSH_TIMEOUT: "420" });
const lab = (args: string[], opts: { reject?: boolean } = {}) =>
  execa(process.execPath, [labBin, ...args], { cwd: dir, env: env(), reject: opts.reject ?? true });
const virsh = (...args: string[]) => execa("virsh", ["-q", "-c", "qemu:///system", ...args]);
const jsonLines = (out: string) =>
  out
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

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
  dir = await mkdtemp(join(tmpdir(), "lab-e2e-libvirt-remote-"));
  home = join(dir, "home");
  await execa(join(repo, "scripts/start-libvirtd.sh"));
  hv = await startLoopbackHypervisor();
  await writeFile(
    join(dir, "lab.yaml"),
    `apiVersion: lab/v1alpha1
kind: Lab
metadata:
  name: ${name}
spec:
  provider:
    type: libvirt
    uri: "${hv.uri}"
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
  try {
    if (dir) await lab(["down", name], { reject: false });
  } finally {
    await hv?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }
});

describe("libvirt provisioner on a remote hypervisor (qemu+ssh through a loopback sshd, TCG)", () => {
  it("lab up boots two domains that accept SSH through the hypervisor jump with pinned host keys", async () => {
    const t0 = Date.now();
    const r = await lab(["--json", "up", "--machines-only"], { reject: false });
    if (r.exitCode !== 0) throw new Error(`lab up failed (exit ${r.exitCode}):\n${r.stdout}\n${r.stderr}`);
    const events = jsonLines(r.stdout);
    const ready = events.filter((e) => e.step === "vm.ssh-ready" && e.state === "done");
    expect(ready.map((e) => e.node).sort()).toEqual(["master-1", "worker-1"]);
    console.log(`remote libvirt lab up (2 domains, TCG) took ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    const machines = JSON.parse(await readFile(join(home, "labs", name, "machines.json"), "utf8")) as {
      name: string;
      address: string;
      ssh: { jump?: { host: string; port: number } };
    }[];
    for (const m of machines) expect(m.ssh.jump).toMatchObject({ host: "127.0.0.1", port: hv!.port });
    // `lab ssh` (OpenSSH with a ProxyCommand through the hypervisor, everything pinned).
    for (const m of machines) {
      const h = await lab(["ssh", m.name, "--", "hostname"]);
      expect(h.stdout.trim()).toBe(m.name);
    }
    const worker = machines.find((m) => m.name === "worker-1")!;
    const ping = await lab(["ssh", "master-1", "--", "ping", "-c", "1", "-W", "5", worker.address]);
    expect(ping.stdout).toContain("1 received");
    // Every machine was reached through the hypervisor's sshd.
    const log = await hv!.log();
    for (const m of machines) expect(log).toContain(`target ${m.address} port 22`);
  });

  it("lab status shows both running; a second up adopts them", async () => {
    const status = JSON.parse((await lab(["--json", "status", name])).stdout) as {
      machines: { name: string; state: string }[];
    };
    expect(status.machines.map((m) => [m.name, m.state])).toEqual([
      ["master-1", "running"],
      ["worker-1", "running"],
    ]);
    const again = jsonLines((await lab(["--json", "up", "--machines-only"])).stdout);
    expect(again.filter((e) => e.step === "vm.start").map((e) => [e.node, e.state])).toEqual([
      ["master-1", "skipped"],
      ["worker-1", "skipped"],
    ]);
  });

  it("lab down removes domains, volumes, network, pool and files on the hypervisor", async () => {
    await lab(["down", name]);
    expect(await leftovers()).toEqual([]);
  });
});
