/**
 * One libvirt lab on two hypervisors, end to end through the real `lab` process: master-1 on
 * qemu:///system, worker-1 on qemu+ssh to a loopback sshd in front of the same libvirtd (a second
 * "hypervisor"), both joined by a plain Linux bridge this test creates (as a homelab's br0 would
 * join real hosts). Both boot, accept SSH with pinned host keys (worker-1 only through its
 * hypervisor's jump), ping each other over the bridge; each hypervisor has its own pool and
 * network with no name clash although they share a libvirtd; `lab down` removes all of it on
 * both. Before that, a topology whose second URI is unreachable fails naming that node and URI
 * and leaves nothing on the reachable one.
 */
import { existsSync } from "node:fs";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostRoutes } from "../../provisioners/network/netns.ts";
import { deriveLabCidr } from "../../topology/plan.ts";
import { formatIPv4, mustParseCidr } from "../../lib/ipv4.ts";
import { startLoopbackHypervisor, type LoopbackHypervisor } from "../support/loopback-sshd.ts";
import { E2eLab, repo, expectRunningThenAdopted } from "./helpers.ts";

const URI = "qemu:///system";
const virsh = (...args: string[]) => execa("virsh", ["-q", "-c", URI, ...args]);
let l: E2eLab;
let hv: LoopbackHypervisor | undefined;
let bridge = "";
let cidr = "";

const topology = (workerUri: string) => `apiVersion: lab/v1alpha1
kind: Lab
metadata:
  name: NAME
spec:
  provider:
    type: libvirt
    uri: ${URI}
    network:
      bridge: ${bridge}
  network:
    cidr: ${cidr}
  resources:
    cpus: 1
    memory: 768Mi
    disk: 4Gi
  nodes:
    - name: master-1
      role: master
    - name: worker-1
      role: worker
      uri: "${workerUri}"
`;

const labUp = (file = "lab.yaml"): Promise<Record<string, unknown>[]> => l.upMachines(file);

/** Everything of the lab libvirt still holds, on either "hypervisor" (one libvirtd). */
async function leftovers(): Promise<string[]> {
  const found: string[] = [];
  const own = (n: string) => n === `lab-${l.name}` || n.startsWith(`lab-${l.name}.`);
  for (const d of (await virsh("list", "--all", "--name")).stdout.split("\n").filter(Boolean)) {
    const xml = (await virsh("dumpxml", "--inactive", d).catch(() => ({ stdout: "" }))).stdout;
    if (xml.includes(`lab="${l.name}"`) || d.startsWith(`lab-${l.name}-`)) found.push(`domain ${d}`);
  }
  for (const n of (await virsh("net-list", "--all", "--name")).stdout.split("\n"))
    if (own(n.trim())) found.push(`network ${n.trim()}`);
  for (const p of (await virsh("pool-list", "--all", "--name")).stdout.split("\n"))
    if (own(p.trim())) found.push(`pool ${p.trim()}`);
  for (const d of await readdir("/var/lib/libvirt/images")) if (own(d)) found.push(`pool directory ${d}`);
  if (existsSync(join(l.home, "labs", l.name))) found.push("lab state");
  return found;
}

/** Interfaces enslaved to the test bridge (the domains' taps). */
async function bridgePorts(): Promise<string[]> {
  const links = JSON.parse((await execa("ip", ["-j", "link", "show", "master", bridge])).stdout || "[]") as {
    ifname: string;
  }[];
  return links.map((x) => x.ifname);
}

beforeAll(async () => {
  await execa(join(repo, "scripts/start-libvirtd.sh"));
  hv = await startLoopbackHypervisor();
  l = await E2eLab.create("lvm", "");
  // The "LAN": a bridge with no uplink holding the host's address in a subnet no route uses.
  bridge = `lbr${process.pid % 100000}`;
  const taken = (await hostRoutes()).map((r) => r.dst).filter((d) => /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(d));
  cidr = deriveLabCidr(`multihv-${l.name}`, taken);
  const c = mustParseCidr(cidr);
  await execa("ip", ["link", "add", bridge, "type", "bridge"]);
  await execa("ip", ["addr", "add", `${formatIPv4(c.base + 1)}/${c.prefix}`, "dev", bridge]);
  await execa("ip", ["link", "set", bridge, "up"]);
  await writeFile(join(l.dir, "lab.yaml"), topology(hv.uri).replaceAll("NAME", l.name));
  await writeFile(
    join(l.dir, "unreachable.yaml"),
    topology(`${URI}?socket=${join(l.dir, "no-such-libvirt-sock")}`).replaceAll("NAME", l.name),
  );
}, 60_000);

afterAll(async () => {
  try {
    if (l) await l.remove();
  } finally {
    await hv?.stop();
    if (bridge) await execa("ip", ["link", "del", bridge], { reject: false });
  }
});

describe("libvirt lab on two hypervisors joined by a host bridge (TCG)", () => {
  it("an unreachable hypervisor among two fails naming its node and URI, and leaves nothing on the other", async () => {
    const r = await l.lab(["up", "--machines-only", "-f", "unreachable.yaml"], { reject: false });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain("worker-1");
    expect(r.stderr).toContain("no-such-libvirt-sock");
    expect(r.stderr).toContain("cannot connect to libvirt");
    const left = await leftovers();
    expect(left.filter((x) => x !== "lab state")).toEqual([]);
    await l.lab(["down", l.name]);
    expect(await leftovers()).toEqual([]);
  });

  it("lab up boots a node on each hypervisor; both accept SSH with pinned keys and reach each other over the bridge", async () => {
    const t0 = Date.now();
    const events = await labUp();
    const ready = events.filter((e) => e.step === "vm.ssh-ready" && e.state === "done");
    expect(ready.map((e) => e.node).sort()).toEqual(["master-1", "worker-1"]);
    console.log(
      `two-hypervisor libvirt lab up (2 domains, TCG) took ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );

    const machines = JSON.parse(await readFile(join(l.home, "labs", l.name, "machines.json"), "utf8")) as {
      name: string;
      address: string;
      ssh: { jump?: { host: string; port: number } };
    }[];
    const master = machines.find((m) => m.name === "master-1")!;
    const worker = machines.find((m) => m.name === "worker-1")!;
    // The local hypervisor's node directly, the remote one's through that hypervisor only.
    expect(master.ssh.jump).toBeUndefined();
    expect(worker.ssh.jump).toMatchObject({ host: "127.0.0.1", port: hv!.port });
    for (const m of machines) {
      const h = await l.lab(["ssh", m.name, "--", "hostname"]);
      expect(h.stdout.trim()).toBe(m.name);
    }
    expect(await hv!.log()).toContain(`target ${worker.address} port 22`);
    const ping1 = await l.lab(["ssh", "master-1", "--", "ping", "-c", "1", "-W", "5", worker.address]);
    expect(ping1.stdout).toContain("1 received");
    const ping2 = await l.lab(["ssh", "worker-1", "--", "ping", "-c", "1", "-W", "5", master.address]);
    expect(ping2.stdout).toContain("1 received");
  });

  it("each hypervisor has its own pool and network onto the bridge, without a name clash", async () => {
    const pools = (await virsh("pool-list", "--name")).stdout
      .split("\n")
      .map((p) => p.trim())
      .filter((p) => p.startsWith(`lab-${l.name}.`));
    expect(pools).toHaveLength(2);
    const disks = await Promise.all(pools.map(async (p) => (await virsh("vol-list", "--pool", p)).stdout));
    // Each node's disk is in exactly one pool, and each pool has its own base image.
    for (const node of ["master-1", "worker-1"])
      expect(disks.filter((d) => d.includes(`${node}.qcow2`))).toHaveLength(1);
    for (const d of disks) expect(d).toContain("base.qcow2");
    const nets = (await virsh("net-list", "--name")).stdout
      .split("\n")
      .map((n) => n.trim())
      .filter((n) => n.startsWith(`lab-${l.name}.`));
    expect(nets).toHaveLength(2);
    for (const n of nets) {
      const xml = (await virsh("net-dumpxml", n)).stdout;
      expect(xml).toMatch(/<forward mode=["']bridge["']/);
      expect(xml).toContain(`<bridge name='${bridge}'/>`);
    }
    expect(await bridgePorts()).toHaveLength(2);
  });

  it("lab status walks both hypervisors; a second up adopts both domains", async () => {
    await expectRunningThenAdopted(l, () => labUp());
  });

  it("lab down removes domains, volumes, networks, pools and files on both, and leaves the user's bridge", async () => {
    await l.lab(["down", l.name]);
    expect(await leftovers()).toEqual([]);
    expect(await bridgePorts()).toEqual([]);
    expect((await execa("ip", ["link", "show", bridge])).exitCode).toBe(0);
  });
});
