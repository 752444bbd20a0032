/**
 * Bare-metal acceptance on machines started independently: `lab up --machines-only` of a 2-node
 * nspawn lab gives two reachable Debian hosts (systemd-nspawn machines: the same image as the VMs,
 * at native speed; this suite tests the baremetal provider, not the VM layer); a `provider: baremetal` 1-master + 1-worker topology points
 * at them (addresses, the first lab's SSH key, host key fingerprints from its state) and `lab up`
 * brings the cluster up through the same bootstrap: nodes Ready via kubectl. `lab down` of the
 * baremetal lab removes what lab installed (units, /etc/lab, /opt/lab, /var/lib/lab) and leaves the
 * hosts running; then `lab down` of the machines lab. A second `lab up` reports every step
 * unchanged (and is timed); with lab-agent stopped on the worker, only join-nodes runs, there, and
 * starts it again. Timings are appended to
 * test-results/e2e-timings.txt. Before that, the provisioner contract (provisioner-contract.ts) for
 * the baremetal provider on the same hosts. Run: npx vitest run --project e2e test/e2e/baremetal.test.ts
 */
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fingerprint } from "../../provisioners/keys.ts";
import type { Machine } from "../../provisioners/provisioner.ts";
import type { Plan } from "../../topology/plan.ts";
import { BOOTSTRAP_STEPS } from "../../bootstrap/index.ts";
import { shq } from "../../ssh/session.ts";
import { provisionerFor } from "../../provisioners/index.ts";
import { jsonLines, nspawnTopology, until } from "./helpers.ts";
import { provisionerContract } from "./provisioner-contract.ts";

/** Steps that only verify (one master: the VIP too): reported done with their finding on every run. */
const CHECKS = new Set(["vip", "wait-ready"]);
/** Every step's outcome on a rerun that changes nothing, or only `changed`. */
const unchangedRun = (changed?: string) =>
  BOOTSTRAP_STEPS.map((s) => [s.id, s.id === changed || CHECKS.has(s.id) ? "done" : "skipped"]);
const repo = resolve(import.meta.dirname, "../..");
const labBin = join(repo, "bin/lab.js");
const vms = `bmv${process.pid % 100000}`;
const metal = `bmm${process.pid % 100000}`;
const imageCache = process.env.LAB_IMAGE_CACHE || "/var/tmp/lab-image-cache";
let home = "";
let dir = "";
let kubeconfig = "";
const timings: [string, number][] = [];

const lab = (args: string[], opts: { reject?: boolean } = {}) =>
  execa(process.execPath, [labBin, ...args], {
    cwd: dir,
    env: { ...process.env, LAB_HOME: home, LAB_IMAGE_CACHE: imageCache, LAB_SSH_TIMEOUT: "420" },
    reject: opts.reject ?? true,
    all: true,
  });
const timed = async (what: string, args: string[]) => {
  const t0 = Date.now();
  const r = await lab(args, { reject: false });
  timings.push([what, Math.round((Date.now() - t0) / 100) / 10]);
  if (r.exitCode !== 0)
    throw new Error(`lab ${args.join(" ")} failed (${r.exitCode}):\n${r.all?.slice(-3000)}`);
  return r;
};
/** Each bootstrap step's final state in a `lab up --json` run, in order. */
const stepOutcomes = (events: Record<string, unknown>[]) =>
  events
    .filter((e) => /^bootstrap\.[a-z-]+$/.test(String(e.step)) && e.node === undefined && e.state !== "start")
    .map((e) => [String(e.step).slice("bootstrap.".length), e.state]);
/** Every per-node install/sync outcome of the bootstrap steps: [step, node, state]. */
const nodeOutcomes = (events: Record<string, unknown>[]) =>
  events
    .filter((e) => /\.(install|sync)$/.test(String(e.step)) && e.node !== undefined && e.state !== "start")
    .map((e) => [e.step, e.node, e.state]);
/**
 * Where a step ran instead of being skipped from the probe: [step, node, why]. The clock step may
 * run when a guest's clock strayed more than a second from the host's since the last run.
 */
const ranOn = (events: Record<string, unknown>[]) =>
  events
    .filter((e) => /\.(install|sync)$/.test(String(e.step)) && e.state === "start" && e.step !== "clock.sync")
    .map((e) => [e.step, e.node, e.message]);
/** Runs a command on a VM of the machines lab (its own SSH, not the baremetal lab's). */
const onHost = (node: string, cmd: string) =>
  // ssh joins its arguments into one remote command line: the script is quoted to stay one word.
  lab(["ssh", node, "--lab", vms, "--", "sudo", "sh", "-c", shq(cmd)], { reject: false });
/** Records how long each bootstrap step (and each node's probe) took in a `lab up --json` run. */
const stepTimings = (label: string, events: Record<string, unknown>[]) => {
  for (const e of events)
    if (
      typeof e.elapsedMs === "number" &&
      e.state !== "start" &&
      (/^bootstrap\.[a-z-]+$/.test(String(e.step)) || /^(node\.probe|baremetal\.)/.test(String(e.step)))
    )
      timings.push([
        `  ${label}: ${String(e.step)}${e.node ? ` ${String(e.node)}` : ""}`,
        Math.round(e.elapsedMs / 100) / 10,
      ]);
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lab-e2e-baremetal-"));
  home = join(dir, "home");
  kubeconfig = join(dir, "kubeconfig");
  await writeFile(join(dir, "vms.yaml"), nspawnTopology(1, 1, vms));
});

afterAll(async () => {
  if (timings.length) {
    await mkdir(join(repo, "test-results"), { recursive: true });
    const width = Math.max(...timings.map(([w]) => w.length));
    await appendFile(
      join(repo, "test-results", "e2e-timings.txt"),
      [
        `e2e baremetal (${metal} on the nspawn machines of ${vms}: 1 master + 1 worker) — seconds`,
        ...timings.map(([w, s]) => `${w.padEnd(width)}  ${s.toFixed(1).padStart(6)}`),
      ].join("\n") + "\n",
    );
  }
  if (dir) {
    await lab(["down", metal], { reject: false });
    await lab(["down", vms], { reject: false });
    await rm(dir, { recursive: true, force: true });
  }
});

/** The machines lab, brought up once for the contract and the scenario. */
let hosts: Promise<{ machines: Machine[]; plan: Plan }> | undefined;
function machinesUp(): Promise<{ machines: Machine[]; plan: Plan }> {
  hosts ??= (async () => {
    await timed("machines lab up --machines-only", ["up", "-f", "vms.yaml", "--machines-only"]);
    const state = join(home, "labs", vms);
    return {
      machines: JSON.parse(await readFile(join(state, "machines.json"), "utf8")) as Machine[],
      plan: JSON.parse(await readFile(join(state, "plan.json"), "utf8")) as Plan,
    };
  })();
  return hosts;
}

/** A baremetal topology named `name` on the machines lab's hosts (their key and host keys). */
async function metalTopology(name: string): Promise<string> {
  const { machines, plan } = await machinesUp();
  const nodes = await Promise.all(
    machines.map(
      async (m) => `    - name: ${m.name}
      role: ${m.role}
      address: ${m.address}
      ssh:
        user: ${m.ssh.user}
        key: ${m.ssh.privateKeyPath}
        hostKey: ${await fingerprint(m.ssh.hostKey)}`,
    ),
  );
  return `apiVersion: lab/v1alpha1
kind: Lab
metadata:
  name: ${name}
spec:
  provider:
    type: baremetal
  network:
    cidr: ${plan.network.cidr}
  nodes:
${nodes.join("\n")}
`;
}

provisionerContract("baremetal (on the nspawn machines of another lab)", async () => ({
  provisioner: provisionerFor("baremetal"),
  topology: await metalTopology("NAME"),
  ownsMachines: false,
}));

describe("bare metal: the bootstrap on machines another lab started", () => {
  it("comes up on the hosts, nodes Ready, and lab down removes what it installed", async () => {
    const { machines } = await machinesUp();
    await writeFile(join(dir, "metal.yaml"), await metalTopology(metal));

    await timed("baremetal lab up (to all nodes Ready)", ["up", "-f", "metal.yaml"]);
    await lab(["kubeconfig", "-f", "metal.yaml", "-o", kubeconfig]);
    const got = await execa("kubectl", [
      "--kubeconfig",
      kubeconfig,
      "--request-timeout=20s",
      "get",
      "nodes",
      "-o",
      "json",
    ]);
    const list = JSON.parse(got.stdout) as {
      items: { metadata: { name: string }; status: { conditions: { type: string; status: string }[] } }[];
    };
    expect(list.items.map((n) => n.metadata.name).sort()).toEqual(machines.map((m) => m.name).sort());
    for (const n of list.items)
      expect(n.status.conditions.find((c) => c.type === "Ready")?.status, n.metadata.name).toBe("True");

    // A second `lab up` on the running lab: one probe per node, every step unchanged.
    const rerun = jsonLines(
      (await timed("baremetal lab up rerun", ["--json", "up", "-f", "metal.yaml"])).stdout,
    );
    stepTimings("rerun", rerun);
    expect(stepOutcomes(rerun)).toEqual(unchangedRun());
    for (const e of rerun.filter((e) => /^bootstrap\.[a-z-]+$/.test(String(e.step)) && e.state !== "start"))
      if (!CHECKS.has(String(e.step).slice("bootstrap.".length)))
        expect(String(e.message), String(e.step)).toMatch(/^unchanged/);
    expect(nodeOutcomes(rerun).filter(([, , state]) => state !== "skipped")).toEqual([]);
    expect(ranOn(rerun)).toEqual([]);
    expect(rerun.some((e) => e.type === "notice" && /nothing changed/.test(String(e.message)))).toBe(true);

    // Drift: lab-agent stopped on the worker. The rerun starts it again there and only there.
    const worker = machines.find((m) => m.role === "worker")!.name;
    expect(
      (await onHost(worker, "systemctl stop lab-agent && systemctl is-active lab-agent")).stdout.trim(),
    ).toBe("inactive");
    const repair = jsonLines(
      (await timed(`baremetal lab up, lab-agent stopped on ${worker}`, ["--json", "up", "-f", "metal.yaml"]))
        .stdout,
    );
    expect(stepOutcomes(repair)).toEqual(unchangedRun("join-nodes"));
    expect(nodeOutcomes(repair).filter(([, , state]) => state !== "skipped")).toEqual([
      ["join-nodes.install", worker, "done"],
    ]);
    expect(
      repair.find((e) => e.step === "join-nodes.install" && e.node === worker && e.state === "start")
        ?.message,
    ).toBe("lab-agent.service is inactive");
    await until("lab-agent active again on the worker", 60_000, async () =>
      (await onHost(worker, "systemctl is-active lab-agent")).stdout.trim() === "active" ? true : undefined,
    );

    // The same rerun without markers takes the full path (every check over SSH, as before markers
    // existed): still nothing changes, and the markers are back afterwards. Timed for comparison.
    for (const m of machines) await onHost(m.name, "rm -rf /var/lib/lab/applied");
    const full = jsonLines(
      (await timed("baremetal lab up rerun without markers", ["--json", "up", "-f", "metal.yaml"])).stdout,
    );
    stepTimings("without markers", full);
    expect(stepOutcomes(full)).toEqual(unchangedRun());
    const again = jsonLines(
      (await timed("baremetal lab up rerun (markers rewritten)", ["--json", "up", "-f", "metal.yaml"]))
        .stdout,
    );
    expect(ranOn(again)).toEqual([]);

    await timed("baremetal lab down", ["down", metal]);
    // The hosts still run, and nothing of lab's is left on them.
    for (const m of machines) {
      const left = await onHost(
        m.name,
        // lab-cgroups-rw.service is the nspawn machine's own (its provider's), not the baremetal lab's.
        "ls -d /etc/lab /opt/lab /var/lib/lab /etc/systemd/system/lab-*.service 2>/dev/null | grep -vx /etc/systemd/system/lab-cgroups-rw.service; systemctl is-active lab-etcd lab-server lab-agent 2>/dev/null | grep -x active; true",
      );
      expect(left.exitCode, `${m.name} reachable after the baremetal lab down`).toBe(0);
      expect(left.stdout.trim(), `${m.name} leftovers`).toBe("");
    }
    await timed("machines lab down", ["down", vms]);
  }, 1_800_000);
});
