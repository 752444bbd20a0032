/**
 * The lab's machines as host processes: found by their marker in /proc (no state needed), killed
 * with everything in their cgroups (a machine whose systemd-nspawn was killed keeps running under
 * its own init), one at a time (a hard power-off) or all at `lab down`.
 */
import { readFileSync } from "node:fs";
import { LabError } from "../../topology/errors.ts";
import { findMachineProcesses, pidAlive, type MachineProcess } from "../host-processes.ts";
import { labCgroupPids, removeLabCgroups } from "./cgroups.ts";
import { nodeFromNspawnArgv } from "./names.ts";

export type NspawnProcess = MachineProcess;

/** The lab's nspawn processes, found from /proc by their marker (no state needed). */
export function findNspawnProcesses(lab: string): Promise<NspawnProcess[]> {
  return findMachineProcesses((argv) => nodeFromNspawnArgv(argv, lab));
}

export function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

export async function killPids(pids: number[], timeoutMs: number): Promise<number[]> {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
  const deadline = Date.now() + timeoutMs;
  let alive = pids.filter(pidAlive);
  while (alive.length && Date.now() < deadline) {
    await sleep(50);
    alive = alive.filter((p) => pidAlive(p) && !isZombie(p));
  }
  return alive;
}

/**
 * SIGKILLs what `list()` returns until it returns nothing: processes fork while they are killed,
 * and a machine whose systemd-nspawn died keeps running under its own init.
 */
async function killUntilGone(what: string, list: () => Promise<number[]>): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const pids = await list();
    if (pids.length === 0) return;
    if (Date.now() > deadline) {
      throw new LabError({
        code: "DOWN_INCOMPLETE",
        what: `processes of ${what} survived SIGKILL: ${pids.slice(0, 10).join(", ")}`,
        fix: "look at them with `ps -o pid,stat,cmd -p PID`; a process in D state waits on the kernel",
        source: "host",
      });
    }
    await killPids(pids, 2000);
  }
}

/**
 * Powers one machine off the hard way, as if its host lost power (what SIGKILL of a QEMU process
 * is to a VM): its systemd-nspawn and every process in its cgroups killed at once, nothing shut
 * down cleanly. Its network namespace, upper layer and cgroups stay, so `lab up` starts it again.
 * Resolves with how many processes it killed (0: the machine was not running).
 */
export async function powerOffMachine(lab: string, node: string): Promise<number> {
  const seen = new Set<number>();
  await killUntilGone(`node ${node} of lab ${lab}`, async () => {
    const pids = [
      ...(await findNspawnProcesses(lab)).filter((p) => p.node === node).map((p) => p.pid),
      ...(await labCgroupPids(lab, node)),
    ];
    for (const p of pids) seen.add(p);
    return pids;
  });
  return seen.size;
}

/**
 * Powers one machine off cleanly: SIGTERM to its systemd-nspawn, which (with --boot) sends the
 * machine's init SIGRTMIN+3, an orderly shutdown: every unit stopped in order, then nspawn exits.
 * Waits until neither nspawn nor anything in the node's cgroups is left, at most `timeoutMs`;
 * then powers it off hard and says what was still running.
 */
export async function shutdownMachine(
  lab: string,
  node: string,
  timeoutMs: number,
): Promise<{ clean: boolean; detail?: string }> {
  const left = async () => {
    const nspawn = (await findNspawnProcesses(lab)).filter((p) => p.node === node).map((p) => p.pid);
    const inCgroups = (await labCgroupPids(lab, node)).filter((p) => !isZombie(p));
    return { nspawn, inCgroups };
  };
  const first = await left();
  if (first.nspawn.length === 0 && first.inCgroups.length === 0)
    return { clean: true, detail: "not running" };
  for (const pid of first.nspawn) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // gone meanwhile
    }
  }
  const deadline = Date.now() + timeoutMs;
  let now = first;
  while (now.nspawn.length || now.inCgroups.length) {
    if (Date.now() > deadline) {
      const detail =
        `still running after ${Math.round(timeoutMs / 1000)} s: ` +
        (now.nspawn.length ? `systemd-nspawn pid ${now.nspawn.join(", ")}` : "systemd-nspawn gone") +
        `, ${now.inCgroups.length} process(es) in its cgroups`;
      await powerOffMachine(lab, node);
      return { clean: false, detail };
    }
    await sleep(250);
    now = await left();
  }
  return { clean: true };
}

/**
 * Ends every machine of the lab: the nspawn processes (found by marker) and everything in the
 * lab's cgroups (a machine whose nspawn was killed keeps running under its own init), then removes
 * the cgroups. The machines' mounts live in their private namespaces and go with them.
 */
export async function stopMachines(lab: string): Promise<void> {
  await killUntilGone(`lab ${lab}`, async () => [
    ...(await findNspawnProcesses(lab)).map((p) => p.pid),
    ...(await labCgroupPids(lab)),
  ]);
  const left = await removeLabCgroups(lab);
  if (left.length) {
    throw new LabError({
      code: "DOWN_INCOMPLETE",
      what: `cgroups of lab ${lab} could not be removed: ${left.slice(0, 5).join(", ")}`,
      fix: "rerun `lab down`; a cgroup empties once its last process has been reaped",
      source: "host",
    });
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
