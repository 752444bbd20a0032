/**
 * Failover of a running lab, through its VIP with stock kubectl (not a test): the chaos run's
 * workload (test/e2e/chaos.ts: one create after another, lists, a watch) against the lab's
 * kubeconfig, a window with no fault first, then one fault after another, all in one run. Per
 * window it prints the API gap (the longest time without an acknowledged create), the creates
 * acknowledged in it and the acknowledged creates a list no longer shows.
 *
 *   npx tsx bench/lab-failover.ts --lab NAME [--faults stop,kill,etcd-stop] [--quiet-s 30]
 *   npx tsx bench/lab-failover.ts --lab NAME --faults poweroff   # destructive, see below
 *
 * Faults: `stop` (systemctl stop lab-server on the VIP holder, started again once the API answers
 * through the VIP), `kill` (kill -9 of lab-server on the VIP holder; systemd restarts it),
 * `etcd-stop` (SIGSTOP of the etcd leader for 15 s), `poweroff` (the VIP holder's QEMU process
 * killed: the master stays off; `lab up` brings it back). Needs a lab with 3 masters and a VIP
 * (examples/default.yaml) that `lab up` brought up, run as the user who did (LAB_HOME).
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { execa } from "execa";
import { labServerHostFiles } from "../templates/lab-server.ts";
import { labsDir } from "../topology/state.ts";
import { etcdLeaderOf, KubectlWorkload, vipHolder, type NodeShell } from "../test/e2e/chaos.ts";
import { sleep } from "../lib/sleep.ts";

const { values } = parseArgs({
  options: {
    lab: { type: "string" },
    faults: { type: "string", default: "stop,kill,etcd-stop" },
    "quiet-s": { type: "string", default: "30" },
  },
});
if (!values.lab) {
  console.error("usage: npx tsx bench/lab-failover.ts --lab NAME [--faults stop,kill,etcd-stop,poweroff]");
  process.exit(2);
}
const lab = values.lab;
const labBin = resolve(import.meta.dirname, "../bin/lab.js");
const masters = ["master-1", "master-2", "master-3"];

const sh: NodeShell = async (node, script) => {
  const b64 = Buffer.from(script).toString("base64");
  const r = await execa(
    process.execPath,
    [labBin, "ssh", "--lab", lab, node, "--", `echo ${b64} | base64 -d | sudo sh`],
    { reject: false, timeout: 120_000 },
  );
  return { stdout: r.stdout, exitCode: r.exitCode ?? 1 };
};

const dir = await mkdtemp(join(tmpdir(), "lab-bench-failover-"));
const kubeconfig = join(dir, "kubeconfig");
await execa(process.execPath, [labBin, "kubeconfig", lab, "-o", kubeconfig]);
const vip = /server: https:\/\/([\d.]+)/.exec(await readFile(kubeconfig, "utf8"))?.[1];
if (!vip) throw new Error(`no VIP in ${lab}'s kubeconfig`);
const off = new Set<string>();
const live = () => masters.filter((m) => !off.has(m));
const machines = JSON.parse(await readFile(join(labsDir(), lab, "machines.json"), "utf8")) as {
  name: string;
  address: string;
}[];
const nodeOf = (address: string) => machines.find((m) => m.address === address)?.name;

async function until<T>(what: string, ms: number, fn: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms / 1000} s`);
    await sleep(500);
  }
}
const apiAnswers = async (): Promise<void> => {
  await until("the API through the VIP", 300_000, async () => {
    const r = await execa(
      "kubectl",
      ["--kubeconfig", kubeconfig, "--request-timeout=5s", "get", "--raw", "/readyz"],
      { reject: false, timeout: 15_000 },
    );
    return r.exitCode === 0 ? true : undefined;
  });
};
const holder = async () => (await until("the VIP holder", 60_000, () => vipHolder(sh, live(), vip)))!;

const faults: Record<string, { inject(): Promise<string>; settle(): Promise<void> }> = {
  stop: {
    async inject() {
      const h = await holder();
      await sh(h, "systemctl stop lab-server.service");
      await apiAnswers();
      await sh(h, "systemctl start lab-server.service");
      return `lab-server stopped on ${h}`;
    },
    settle: apiAnswers,
  },
  kill: {
    async inject() {
      const h = await holder();
      await sh(h, "kill -9 $(systemctl show -p MainPID --value lab-server.service)");
      return `kill -9 lab-server on ${h}`;
    },
    settle: apiAnswers,
  },
  "etcd-stop": {
    async inject() {
      const leader = await until("the etcd leader", 120_000, () =>
        etcdLeaderOf(sh, live()[0]!, labServerHostFiles(), nodeOf),
      );
      const pid = "$(systemctl show -p MainPID --value lab-etcd.service)";
      await sh(leader, `kill -STOP ${pid}`);
      try {
        await sleep(15_000);
      } finally {
        await sh(leader, `kill -CONT ${pid}`);
      }
      return `etcd leader ${leader} SIGSTOP 15 s`;
    },
    settle: apiAnswers,
  },
  poweroff: {
    async inject() {
      const h = await holder();
      const r = await execa("pgrep", ["-f", "--", `(-name |LAB_NODE=)lab:${lab}/${h}( |$)`], {
        reject: false,
      });
      for (const pid of r.stdout.split("\n").filter(Boolean)) process.kill(Number(pid), "SIGKILL");
      off.add(h);
      return `${h} powered off (VIP holder)`;
    },
    settle: apiAnswers,
  },
};

const w = new KubectlWorkload({ kubeconfig });
w.start();
const rows: { what: string; gap: number; acked: number; lost: number }[] = [];
try {
  await until("the workload's first creates", 300_000, async () => (w.acked.length >= 3 ? true : undefined));
  const quiet0 = Date.now();
  const acked0 = w.acked.length;
  await sleep(Number(values["quiet-s"]) * 1000);
  rows.push({ what: "no fault", gap: w.gap(quiet0), acked: w.acked.length - acked0, lost: 0 });
  for (const name of values.faults!.split(",").filter(Boolean)) {
    const f = faults[name];
    if (!f) throw new Error(`unknown fault ${name} (stop, kill, etcd-stop, poweroff)`);
    const t0 = Date.now();
    const before = w.acked.length;
    const what = await f.inject();
    await f.settle();
    const settled = Date.now();
    // The window stays open 10 s and 3 acks past the fault, so a VIP that moves back is in it.
    await until(`${what}: creates acknowledged again`, 300_000, async () =>
      w.acksSince(settled) >= 3 && Date.now() - settled >= 10_000 ? true : undefined,
    );
    const gap = w.gap(t0);
    const lost = await until(`${what}: a list`, 120_000, () => w.lost());
    rows.push({ what, gap, acked: w.acked.length - before, lost: lost.length });
    console.error(`${what}: gap ${(gap / 1000).toFixed(1)} s, ${lost.length} lost`);
  }
} finally {
  await w.stop();
  await rm(dir, { recursive: true, force: true });
}
console.log(`lab ${lab}, through the VIP ${vip}; ${w.summary()}`);
console.log("window                                   API gap   acked   lost   gap / no-fault gap");
const base = rows[0]!.gap;
for (const r of rows)
  console.log(
    `${r.what.padEnd(40)} ${`${(r.gap / 1000).toFixed(1)} s`.padStart(8)}   ${String(r.acked).padStart(5)}   ${String(r.lost).padStart(4)}   ${(r.gap / base).toFixed(1).padStart(5)}`,
  );
