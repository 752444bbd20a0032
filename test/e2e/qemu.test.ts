/**
 * Real VMs under TCG through the real `lab` process: image build (cached the second time), a
 * 2-node lab whose first `up` is killed mid-way and whose second `up` converges, SSH with the
 * pinned host key, VM-to-VM traffic over the lab bridge, status, and a `down` that leaves no
 * process, namespace, link or file behind. First the provisioner contract (provisioner-contract.ts)
 * on a lab of one VM: the qemu provider through its API.
 */
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { provisionerFor } from "../../provisioners/index.ts";
import { E2eLab, jsonLines, labTopology, VM_RESOURCES } from "./helpers.ts";
import { provisionerContract } from "./provisioner-contract.ts";

let l: E2eLab;

const qemuTopology = (workers: number): string =>
  labTopology({ provider: { type: "qemu" }, resources: VM_RESOURCES, masters: 1, workers });

beforeAll(async () => {
  l = await E2eLab.create("e2e", qemuTopology(1));
});

afterAll(async () => {
  await l?.remove();
});

provisionerContract("qemu (one VM, TCG)", async () => ({
  provisioner: provisionerFor("qemu"),
  topology: qemuTopology(0),
}));

describe("qemu provisioner (TCG)", () => {
  it("builds the guest image once; the second build is a cache hit", async () => {
    await l.lab(["image", "build"]);
    const started = Date.now();
    const second = await l.lab(["--json", "image", "build"]);
    const result = jsonLines(second.stdout).find((l) => l.type === "result")!;
    expect(result.cached).toBe(true);
    expect(Date.now() - started).toBeLessThan(15_000);
    const ls = JSON.parse((await l.lab(["--json", "image", "ls"])).stdout) as { key: string }[];
    expect(ls.map((i) => i.key)).toContain(result.key);
  });

  it("lab up killed mid-way, then rerun, converges on the running VMs", async () => {
    const first: ResultPromise = l.spawnLab(["--json", "up", "--machines-only"]);
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
    const second = await l.lab(["--json", "up", "--machines-only"]);
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
    const machines = await l.machines();
    expect(machines.map((m) => m.name).sort()).toEqual(["master-1", "worker-1"]);
    const knownHosts = join(l.home, "labs", l.name, "ssh", "known_hosts");
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
    const ping = await l.lab(["ssh", "master-1", "--", "ping", "-c", "1", "-W", "5", worker.address]);
    expect(ping.stdout).toContain("1 received");
  });

  it("lab status --json lists both machines running at their addresses", async () => {
    const status = JSON.parse((await l.lab(["--json", "status", l.name])).stdout) as {
      machines: { name: string; state: string; address: string; detail: string }[];
    };
    expect(status.machines.map((m) => [m.name, m.state])).toEqual([
      ["master-1", "running"],
      ["worker-1", "running"],
    ]);
    for (const m of status.machines) expect(m.detail).toMatch(/pid \d+, uptime \d+s, accel (tcg|kvm)/);
  });

  it("lab down removes every process, namespace, link and file; a second down is a no-op", async () => {
    await l.lab(["down", l.name]);
    expect(await l.leftovers()).toEqual([]);
    const again = await l.lab(["down", l.name]);
    expect(again.exitCode).toBe(0);
    expect(await l.leftovers()).toEqual([]);
  });
});
