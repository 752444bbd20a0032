/**
 * What the provisioners of machines on this host (nspawn, qemu) do alike: the lab's network
 * namespace as the `network` step, the nodes' pinned host keys in ssh/known_hosts, a status per
 * planned node from the processes found running, and the consoles' logs copied out.
 */
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { execa } from "execa";
import type { Plan } from "../topology/plan.ts";
import { step } from "../topology/progress.ts";
import type { LabState } from "../topology/state.ts";
import { ensureLabNetwork } from "./network/netns.ts";
import type { Machine, MachineStatus, ProvisionContext } from "./provisioner.ts";

/** The `network` step: the lab's namespace, bridge and gateway. */
export async function localNetworkStep(ctx: ProvisionContext): Promise<void> {
  const { plan, reporter } = ctx;
  await step(
    reporter,
    "network",
    () =>
      ensureLabNetwork({
        lab: plan.lab,
        cidr: plan.network.cidr,
        prefix: plan.network.prefix,
        gateway: plan.network.gateway,
      }),
    {
      message: `namespace ${plan.network.netns}, gateway ${plan.network.gateway} on ${plan.network.hostVeth}`,
    },
  );
}

/** ssh/known_hosts: each machine's address with its pinned host key. */
export async function writeKnownHosts(state: LabState, machines: Machine[]): Promise<void> {
  await state.writeSecret(
    "ssh/known_hosts",
    machines.map((m) => `${m.ssh.host} ${m.ssh.hostKey.split(/\s+/).slice(0, 2).join(" ")}`).join("\n") +
      "\n",
  );
}

/**
 * A status per planned node: running with `detail` when its process is in `procs`, else stopped
 * when its record exists, missing when not.
 */
export async function localStatuses<P, R>(
  plan: Plan,
  procs: Map<string, P>,
  record: (node: string) => Promise<R | undefined>,
  detail: (address: string, proc: P, rec: R | undefined) => string,
): Promise<MachineStatus[]> {
  const out: MachineStatus[] = [];
  for (const n of plan.nodes) {
    const proc = procs.get(n.name);
    const rec = await record(n.name);
    if (proc) out.push({ name: n.name, state: "running", detail: detail(n.address, proc, rec) });
    else out.push({ name: n.name, state: rec ? "stopped" : "missing", detail: `address ${n.address}` });
  }
  return out;
}

/** Copies each node's console log, where there is one, to `dir/NODE-console.log`. */
export async function copyConsoleLogs(
  plan: Plan,
  dir: string,
  consoleLog: (node: string) => string,
): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const n of plan.nodes) {
    const log = consoleLog(n.name);
    if (existsSync(log)) await execa("cp", [log, `${dir}/${n.name}-console.log`]);
  }
}
