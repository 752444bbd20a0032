/**
 * A libvirt lab end to end through the real `lab` process and the machine's libvirtd (TCG): two
 * domains boot the built image and accept SSH with their pinned host keys, virsh shows them with
 * the lab's marker, a second `up` adopts them, and `lab down` removes domains, volumes, the
 * network, the pool and the lab's files. After it, the provisioner contract (provisioner-contract.ts)
 * on a lab of one domain: the libvirt provider through its API.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { provisionerFor } from "../../provisioners/index.ts";
import {
  E2eLab,
  labTopology,
  libvirtLeftovers,
  repo,
  VM_RESOURCES,
  expectRunningThenAdopted,
} from "./helpers.ts";
import { provisionerContract } from "./provisioner-contract.ts";

const URI = "qemu:///system";
let l: E2eLab;
const virsh = (...args: string[]) => execa("virsh", ["-q", "-c", URI, ...args]);

const libvirtTopology = (workers: number): string =>
  labTopology({ provider: { type: "libvirt", uri: URI }, resources: VM_RESOURCES, masters: 1, workers });

// `lab up --machines-only` through the CLI: this suite is about the machines, not the bootstrap.
const labUp = (): Promise<Record<string, unknown>[]> => l.upMachines();

/** libvirt's leftovers (domains, network, pool) on top of the lab's own files. */
async function leftovers(): Promise<string[]> {
  const found = await libvirtLeftovers(l.name);
  if (existsSync(join(l.home, "labs", l.name))) found.push(`state ${join(l.home, "labs", l.name)}`);
  return found;
}

beforeAll(async () => {
  await execa(join(repo, "scripts/start-libvirtd.sh"));
  l = await E2eLab.create("lv", libvirtTopology(1));
});

afterAll(async () => {
  await l?.remove();
});

describe("libvirt provisioner (real libvirtd, TCG)", () => {
  it("lab up boots two domains that accept SSH with their pinned host keys", async () => {
    const t0 = Date.now();
    const events = await labUp();
    const ready = events.filter((e) => e.step === "vm.ssh-ready" && e.state === "done");
    expect(ready.map((e) => e.node).sort()).toEqual(["master-1", "worker-1"]);
    console.log(`libvirt lab up (2 domains, TCG) took ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    const machines = await l.machines();
    const knownHosts = join(l.home, "labs", l.name, "ssh", "known_hosts");
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
    const ping = await l.lab(["ssh", "master-1", "--", "ping", "-c", "1", "-W", "5", worker.address]);
    expect(ping.stdout).toContain("1 received");
  });

  it("virsh lists them, running, with the lab's marker", async () => {
    const running = (await virsh("list", "--name")).stdout.split("\n");
    for (const node of ["master-1", "worker-1"]) {
      const domain = `lab-${l.name}-${node}`;
      expect(running).toContain(domain);
      const xml = (await virsh("dumpxml", domain)).stdout;
      expect(xml).toMatch(new RegExp(`<\\w+:node xmlns:\\w+="[^"]+" lab="${l.name}" node="${node}"`));
    }
    const vols = (await virsh("vol-list", "--pool", `lab-${l.name}`)).stdout;
    for (const v of ["base.qcow2", "master-1.qcow2", "worker-1.qcow2", "master-1-seed.img"])
      expect(vols).toContain(v);
  });

  it("lab status shows both running; a second up adopts them", async () => {
    await expectRunningThenAdopted(l, () => labUp());
  });

  it("lab down removes domains, volumes, network, pool and files; a second down is a no-op", async () => {
    await l.lab(["down", l.name]);
    expect(await leftovers()).toEqual([]);
    await l.lab(["down", l.name]);
    expect(await leftovers()).toEqual([]);
  });
});

provisionerContract("libvirt (one domain, qemu:///system, TCG)", async () => ({
  provisioner: provisionerFor("libvirt"),
  topology: libvirtTopology(0),
  leftovers: libvirtLeftovers,
}));
