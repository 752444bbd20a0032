/**
 * Real VMs under TCG through the real `lab` process: image build (cached the second time), a
 * 2-node lab whose first `up` is killed mid-way and whose second `up` converges, SSH with the
 * pinned host key, VM-to-VM traffic over the lab bridge, status, and a `down` that leaves no
 * process, namespace, link or file behind.
 */
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa, type ResultPromise } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const repo = resolve(import.meta.dirname, "../..");
const labBin = join(repo, "bin/lab.js");
const name = `e2e${process.pid % 100000}`;
// Shared across runs so CI (and developers) build the image once.
const imageCache = process.env.LAB_IMAGE_CACHE || "/var/tmp/lab-image-cache";
let home = "";
let dir = "";

const env = () => ({ ...process.env, LAB_HOME: home, LAB_IMAGE_CACHE: imageCache, LAB_SSH_TIMEOUT: "420" });
const lab = (args: string[], opts: { reject?: boolean } = {}) =>
  execa(process.execPath, [labBin, ...args], { cwd: dir, env: env(), reject: opts.reject ?? true });
/** JSON lines of an output; a stream still being read may end mid-line, so its tail is skipped. */
const jsonLines = (out: string, streaming = false) =>
  out
    .split("\n")
    .slice(0, streaming ? -1 : undefined)
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

async function leftovers(): Promise<string[]> {
  const found: string[] = [];
  for (const pid of (await readdir("/proc")).filter((e) => /^\d+$/.test(e))) {
    const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (cmd.includes(`lab:${name}/`)) found.push(`process ${pid}: ${cmd.split("\0").slice(0, 3).join(" ")}`);
  }
  if (existsSync(`/run/netns/lab-${name}`)) found.push(`netns lab-${name}`);
  const links = JSON.parse((await execa("ip", ["-j", "link", "show"])).stdout) as {
    ifname: string;
    ifalias?: string;
  }[];
  for (const l of links) if (l.ifalias === `lab:${name}`) found.push(`link ${l.ifname}`);
  if (existsSync(join(home, "labs", name))) found.push(`state ${join(home, "labs", name)}`);
  return found;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lab-e2e-qemu-"));
  home = join(dir, "home");
  await writeFile(
    join(dir, "lab.yaml"),
    `apiVersion: lab/v1alpha1
kind: Lab
metadata:
  name: ${name}
spec:
  provider:
    type: qemu
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

describe("qemu provisioner (TCG)", () => {
  it("builds the guest image once; the second build is a cache hit", async () => {
    await lab(["image", "build"]);
    const started = Date.now();
    const second = await lab(["--json", "image", "build"]);
    const result = jsonLines(second.stdout).find((l) => l.type === "result")!;
    expect(result.cached).toBe(true);
    expect(Date.now() - started).toBeLessThan(15_000);
    const ls = JSON.parse((await lab(["--json", "image", "ls"])).stdout) as { key: string }[];
    expect(ls.map((i) => i.key)).toContain(result.key);
  });

  it("lab up killed mid-way, then rerun, converges on the running VMs", async () => {
    const first: ResultPromise = execa(process.execPath, [labBin, "--json", "up", "--machines-only"], {
      cwd: dir,
      env: env(),
      reject: false,
    });
    const started = new Set<string>();
    await new Promise<void>((resolveStarted, reject) => {
      let buf = "";
      first.stdout!.on("data", (d: Buffer) => {
        buf += d.toString();
        for (const e of jsonLines(buf, true))
          if (e.step === "vm.start" && e.state === "done") started.add(String(e.node));
        if (started.size === 2) resolveStarted();
      });
      first.then(
        (r) => reject(new Error(`lab up ended before the VMs started: ${r.stderr} ${r.stdout}`)),
        reject,
      );
    });
    first.kill("SIGKILL");
    await first;

    const t0 = Date.now();
    const second = await lab(["--json", "up", "--machines-only"]);
    const events = jsonLines(second.stdout);
    const starts = events.filter((e) => e.step === "vm.start");
    expect(starts.map((e) => [e.node, e.state]).sort()).toEqual([
      ["master-1", "skipped"],
      ["worker-1", "skipped"],
    ]);
    expect(events.some((e) => e.type === "notice" && /TCG|KVM/.test(String(e.message)))).toBe(true);
    const ready = events.filter((e) => e.step === "vm.ssh-ready" && e.state === "done");
    expect(ready).toHaveLength(2);
    console.log(`second lab up (VMs already booting) took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });

  it("reaches both VMs over SSH with the pinned host key only, and VM to VM over the bridge", async () => {
    const machines = JSON.parse(await readFile(join(home, "labs", name, "machines.json"), "utf8")) as {
      name: string;
      address: string;
      ssh: { user: string; privateKeyPath: string };
    }[];
    expect(machines.map((m) => m.name).sort()).toEqual(["master-1", "worker-1"]);
    const knownHosts = join(home, "labs", name, "ssh", "known_hosts");
    for (const m of machines) {
      const r = await execa("ssh", [
        "-i",
        m.ssh.privateKeyPath,
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        `UserKnownHostsFile=${knownHosts}`,
        `${m.ssh.user}@${m.address}`,
        "hostname && sudo -n true && echo sudo-ok",
      ]);
      expect(r.stdout.split("\n")).toEqual([m.name, "sudo-ok"]);
    }
    const worker = machines.find((m) => m.name === "worker-1")!;
    const ping = await lab(["ssh", "master-1", "--", "ping", "-c", "1", "-W", "5", worker.address]);
    expect(ping.stdout).toContain("1 received");
  });

  it("lab status --json lists both machines running at their addresses", async () => {
    const status = JSON.parse((await lab(["--json", "status", name])).stdout) as {
      machines: { name: string; state: string; address: string; detail: string }[];
    };
    expect(status.machines.map((m) => [m.name, m.state])).toEqual([
      ["master-1", "running"],
      ["worker-1", "running"],
    ]);
    for (const m of status.machines) expect(m.detail).toMatch(/pid \d+, uptime \d+s, accel (tcg|kvm)/);
  });

  it("lab down removes every process, namespace, link and file; a second down is a no-op", async () => {
    await lab(["down", name]);
    expect(await leftovers()).toEqual([]);
    const again = await lab(["down", name]);
    expect(again.exitCode).toBe(0);
    expect(await leftovers()).toEqual([]);
  });
});
