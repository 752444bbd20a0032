/**
 * The provisioner contract, written once for every provider (provisioners/provisioner.ts): what the
 * SSH bootstrap relies on and what `lab down` promises. Run it for a provider with
 * `provisionerContract(title, make)` from a test file of the e2e project; `make` gives the
 * provisioner and a topology whose lab name is NAME. Drives the Provisioner API directly (no CLI),
 * with real machines:
 *   - create returns one Machine per planned node, at the planned address, reachable over SSH with
 *     the pinned host key (never trust-on-first-use);
 *   - create again adopts the running machines (no restart) and returns the same machines;
 *   - status says running for every node;
 *   - destroy leaves no process, namespace, link or cgroup carrying the lab's name (nor what the
 *     provider's own `leftovers` finds: libvirt domains, networks, pools), also when the state
 *     directory is gone first, and a second destroy is harmless.
 * A provider whose machines exist apart from the lab (baremetal: `ownsMachines: false`) starts and
 * stops none: create reports no machine start, and after destroy the hosts still answer SSH.
 * One suite for every provider (qemu.test.ts, libvirt.test.ts, baremetal.test.ts, nspawn.test.ts).
 */
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Machine, Provisioner } from "../../provisioners/provisioner.ts";
import { createHash } from "node:crypto";
import { Client } from "ssh2";
import { trySsh } from "../../ssh/ready.ts";
import { checkTopology } from "../../topology/load.ts";
import { plan, type Plan } from "../../topology/plan.ts";
import { RecordingReporter } from "../../topology/progress.ts";
import { LabState } from "../../topology/state.ts";
import { imageCache } from "./helpers.ts";

export interface ContractSubject {
  provisioner: Provisioner;
  /** Topology YAML; `NAME` is replaced by the lab name of the run. */
  topology: string;
  /** False when the machines exist apart from the lab (baremetal): none started, none stopped. */
  ownsMachines?: boolean;
  /** What else of lab `lab` the provider leaves on this host when it fails (its own resources). */
  leftovers?: (lab: string) => Promise<string[]>;
}

/** What a lab named `lab` left on this host, found by name only (the markers every provider uses). */
export async function hostLeftovers(lab: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of (await readdir("/proc")).filter((e) => /^\d+$/.test(e))) {
    const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (cmd.includes(`lab:${lab}/`)) found.push(`process ${pid}: ${cmd.split("\0").slice(0, 3).join(" ")}`);
  }
  for (const ns of await readdir("/run/netns").catch(() => [] as string[]))
    if (ns === `lab-${lab}` || ns.startsWith(`lab-${lab}.`)) found.push(`netns ${ns}`);
  const links = JSON.parse((await execa("ip", ["-j", "link", "show"])).stdout) as {
    ifname: string;
    ifalias?: string;
  }[];
  for (const l of links) if (l.ifalias === `lab:${lab}`) found.push(`link ${l.ifname}`);
  for (const h of await readdir("/sys/fs/cgroup").catch(() => [] as string[])) {
    const dir = `/sys/fs/cgroup/${h}/lab-nspawn/${lab}`;
    if (existsSync(dir)) found.push(`cgroup ${dir}`);
  }
  const mounts = await readFile("/proc/self/mountinfo", "utf8");
  for (const line of mounts.split("\n")) if (line.includes(`lab:${lab}/`)) found.push(`mount ${line}`);
  return found;
}

/**
 * A login with the machine's pinned host key: a public key (trySsh, what the providers wait with)
 * or a `SHA256:` fingerprint (what a baremetal topology pins), compared with the key presented.
 */
async function loginWorks(m: Machine): Promise<{ ok: boolean; error?: string }> {
  if (!m.ssh.hostKey.startsWith("SHA256:")) {
    const r = await trySsh({ node: m.name, ...m.ssh });
    return r.ok ? { ok: true } : { ok: false, error: r.error };
  }
  const privateKey = await readFile(m.ssh.privateKeyPath);
  return await new Promise((resolve) => {
    const c = new Client();
    let mismatch = false;
    const done = (r: { ok: boolean; error?: string }) => {
      c.removeAllListeners();
      c.on("error", () => undefined);
      c.end();
      resolve(r);
    };
    c.on("ready", () => done({ ok: true }));
    c.on("error", (err) => done({ ok: false, error: mismatch ? "host key does not match" : err.message }));
    c.connect({
      host: m.ssh.host,
      port: m.ssh.port,
      username: m.ssh.user,
      privateKey,
      readyTimeout: 20_000,
      hostVerifier: (key: Buffer) => {
        const fp = "SHA256:" + createHash("sha256").update(key).digest("base64").replace(/=+$/, "");
        mismatch = fp !== m.ssh.hostKey;
        return !mismatch;
      },
    });
  });
}

export function provisionerContract(title: string, make: () => Promise<ContractSubject>): void {
  describe(`provisioner contract: ${title}`, () => {
    const name = `pc${process.pid % 100000}`;
    let home: string;
    let subject: ContractSubject;
    let p: Plan;
    let machines: Machine[] = [];
    const saved = { home: process.env.LAB_HOME, cache: process.env.LAB_IMAGE_CACHE };
    const state = () => new LabState(name);

    beforeAll(async () => {
      home = await mkdtemp(join(tmpdir(), "lab-contract-"));
      process.env.LAB_HOME = home;
      process.env.LAB_IMAGE_CACHE = imageCache;
      subject = await make();
      const checked = checkTopology(subject.topology.replaceAll("NAME", name));
      if (!checked.lab) throw new Error(`contract topology invalid: ${JSON.stringify(checked.problems)}`);
      p = plan(checked.lab);
    });

    afterAll(async () => {
      await subject?.provisioner
        .destroy({ labName: name, state: state(), reporter: new RecordingReporter() })
        .catch(() => undefined);
      process.env.LAB_HOME = saved.home;
      process.env.LAB_IMAGE_CACHE = saved.cache;
      if (saved.home === undefined) delete process.env.LAB_HOME;
      if (saved.cache === undefined) delete process.env.LAB_IMAGE_CACHE;
      await rm(home, { recursive: true, force: true });
    });

    it("create: one machine per planned node, at its address, SSH with the pinned host key", async () => {
      const reporter = new RecordingReporter();
      machines = await subject.provisioner.create({ plan: p, state: state(), reporter });
      expect(machines.map((m) => [m.name, m.role, m.address]).sort()).toEqual(
        p.nodes.map((n) => [n.name, n.role, n.address]).sort(),
      );
      for (const m of machines) {
        expect(m.ssh.hostKey).toMatch(/^(ssh-ed25519 |SHA256:)/);
        expect(await loginWorks(m)).toEqual({ ok: true });
        // Another key under the same address is refused: the pin is checked, not recorded.
        const other = machines.find((o) => o.name !== m.name) ?? m;
        if (other !== m) {
          const wrong = await loginWorks({ ...m, ssh: { ...m.ssh, hostKey: other.ssh.hostKey } });
          expect(wrong.ok).toBe(false);
        }
      }
    });

    it("create again adopts the running machines instead of restarting them", async () => {
      const reporter = new RecordingReporter();
      const again = await subject.provisioner.create({ plan: p, state: state(), reporter });
      expect(again).toEqual(machines);
      const starts = reporter.events.filter((e) => e.step === "vm.start");
      expect(starts.map((e) => e.state)).toEqual(
        subject.ownsMachines === false ? [] : p.nodes.map(() => "skipped"),
      );
      for (const m of again) expect(await loginWorks(m)).toEqual({ ok: true });
    });

    it("status: every node running", async () => {
      const st = await subject.provisioner.status({
        plan: p,
        state: state(),
        reporter: new RecordingReporter(),
      });
      expect(st.map((s) => [s.name, s.state]).sort()).toEqual(p.nodes.map((n) => [n.name, "running"]).sort());
    });

    it("destroy without the state directory leaves nothing behind; a second destroy is harmless", async () => {
      const left = async () => [...(await hostLeftovers(name)), ...((await subject.leftovers?.(name)) ?? [])];
      if (subject.ownsMachines !== false) expect(await left()).not.toEqual([]);
      await rm(state().dir, { recursive: true, force: true });
      const destroy = () =>
        subject.provisioner.destroy({
          labName: name,
          state: state(),
          reporter: new RecordingReporter(),
          // A provider that does not own its machines learns them from the topology only.
          ...(subject.ownsMachines === false ? { plan: p } : {}),
        });
      await destroy();
      expect(await left()).toEqual([]);
      await destroy();
      if (subject.ownsMachines === false) {
        // The hosts are not the lab's: they still run and still let us in.
        for (const m of machines) expect(await loginWorks(m)).toEqual({ ok: true });
        return;
      }
      const st = await subject.provisioner.status({
        plan: p,
        state: state(),
        reporter: new RecordingReporter(),
      });
      expect(st.every((s) => s.state !== "running")).toBe(true);
    });
  });
}
