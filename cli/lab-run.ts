/**
 * What `lab up`, `lab down` and `lab status` do, apart from argument parsing: load, plan (kept
 * stable through the state), lock, provision, record, bootstrap; and the reverse.
 */
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { bootstrapCluster, prepareLocal } from "../bootstrap/index.ts";
import { allProvisioners, provisionerFor } from "../provisioners/index.ts";
import { hostRoutes } from "../provisioners/network/netns.ts";
import { hostVethName, takenSubnets } from "../provisioners/network/names.ts";
import {
  labRunState,
  type LabRunState,
  type Machine,
  type MachineStatus,
  type Provisioner,
} from "../provisioners/provisioner.ts";
import type { LoadedLab } from "../topology/load.ts";
import { plan, type Plan } from "../topology/plan.ts";
import type { Reporter } from "../topology/progress.ts";
import type { Lab } from "../topology/schema.ts";
import { LabState } from "../topology/state.ts";

/** Written by `lab stop` in the lab's state, removed once `lab start` or `lab up` converged. */
export const STOPPED_FILE = "stopped.json";

/**
 * The plan for this run. A derived subnet is recorded in the state on the first `up` and reused,
 * so the lab keeps its addresses even though its own route now occupies that subnet.
 */
export async function planForUp(lab: Lab, state: LabState): Promise<Plan> {
  const recorded = await state.readJson<Plan>("plan.json");
  if (!lab.spec.network.cidr && recorded?.network.derived) {
    const pinned: Lab = {
      ...lab,
      spec: { ...lab.spec, network: { ...lab.spec.network, cidr: recorded.network.cidr } },
    };
    const p = plan(pinned);
    return { ...p, network: { ...p.network, derived: true } };
  }
  const needsRoutes = !lab.spec.network.cidr && lab.spec.provider.type !== "baremetal";
  const taken = needsRoutes ? takenSubnets(await hostRoutes(), hostVethName(lab.metadata.name)) : [];
  return plan(lab, { taken });
}

export interface UpResult {
  plan: Plan;
  machines: Machine[];
}

export interface ConvergeOptions {
  bootstrap?: boolean;
  waitReadyTimeoutMs?: number;
}

export async function labUp(
  loaded: LoadedLab,
  reporter: Reporter,
  signal?: AbortSignal,
  opts: ConvergeOptions = {},
): Promise<UpResult> {
  const lab = loaded.lab;
  const state = new LabState(lab.metadata.name);
  await state.lock("up");
  try {
    const p = await planForUp(lab, state);
    await state.writeJson("plan.json", p);
    return await converge(p, state, reporter, signal, opts);
  } finally {
    state.unlockSync();
  }
}

/**
 * Machines created, adopted or booted again, then the bootstrap; shared by `lab up` and `lab start`.
 * The caller holds the lock and has recorded `p`.
 */
export async function converge(
  p: Plan,
  state: LabState,
  reporter: Reporter,
  signal: AbortSignal | undefined,
  opts: ConvergeOptions,
): Promise<UpResult> {
  const provisioner = provisionerFor(p.provider.type);
  // Certificates and bundles are made while the machines boot.
  if (opts.bootstrap !== false) prepareLocal({ plan: p, state });
  const machines = await provisioner.create({ plan: p, state, reporter, signal });
  await state.writeJson("machines.json", machines);
  if (opts.bootstrap !== false)
    await bootstrapCluster({
      plan: p,
      state,
      machines,
      reporter,
      signal,
      ...(opts.waitReadyTimeoutMs ? { waitReadyTimeoutMs: opts.waitReadyTimeoutMs } : {}),
    });
  // Running again: what `lab stop` recorded no longer holds (on bare metal, once the services run).
  if (opts.bootstrap !== false || p.provider.type !== "baremetal")
    await rm(state.path(STOPPED_FILE), { force: true });
  return { plan: p, machines };
}

/** Removes the lab; works with or without its state directory, and twice in a row. */
export async function labDown(
  name: string,
  reporter: Reporter,
  /** The provider (or the plan of the topology file) when the lab's state has none. */
  fallback?: Plan["provider"]["type"] | Plan,
): Promise<void> {
  const state = new LabState(name);
  const hadState = existsSync(state.dir);
  await state.lock("down");
  try {
    // The topology's plan tells a provisioner where to look (e.g. every libvirt hypervisor URI).
    const recorded =
      (hadState ? await state.readJson<Plan>("plan.json") : undefined) ??
      (typeof fallback === "object" ? fallback : undefined);
    const type = recorded?.provider.type ?? (typeof fallback === "string" ? fallback : undefined);
    const provisioners: Provisioner[] = type ? [provisionerFor(type)] : allProvisioners();
    for (const p of provisioners) {
      await p.destroy({ labName: name, state, reporter, ...(recorded ? { plan: recorded } : {}) });
    }
    await state.remove();
  } finally {
    state.unlockSync();
  }
}

export async function labStatus(
  name: string,
  reporter: Reporter,
): Promise<{ plan?: Plan; machines: MachineStatus[]; state: LabRunState; stoppedAt?: string }> {
  const state = new LabState(name);
  const recorded = await state.readJson<Plan>("plan.json");
  if (!recorded) return { machines: [], state: "missing" };
  const machines = await provisionerFor(recorded.provider.type).status({ plan: recorded, state, reporter });
  const stopped = await state.readJson<{ at: string; servicesOnly: boolean }>(STOPPED_FILE);
  return {
    plan: recorded,
    machines,
    state: labRunState(machines, stopped?.servicesOnly === true),
    ...(stopped ? { stoppedAt: stopped.at } : {}),
  };
}
