/**
 * The cluster bootstrap over SSH: an ordered list of named, idempotent steps (pki, etcd,
 * control-plane, vip, join-nodes, wait-ready) run against the machines a provisioner produced.
 * It never asks whether a machine is a VM or bare metal.
 */
import type { Machine } from "../provisioners/provisioner.ts";
import type { Plan } from "../topology/plan.ts";
import type { Reporter } from "../topology/progress.ts";
import type { LabState } from "../topology/state.ts";

export interface BootstrapContext {
  plan: Plan;
  state: LabState;
  machines: Machine[];
  reporter: Reporter;
  signal?: AbortSignal;
}

export interface BootstrapStep {
  /** Stable id shown in progress and used in state (e.g. `etcd`). */
  id: string;
  title: string;
  run(ctx: BootstrapContext): Promise<void>;
}

/** The bootstrap steps in order. Filled in by the HA bootstrap work (issue 4). */
export const BOOTSTRAP_STEPS: BootstrapStep[] = [];

export async function bootstrapCluster(ctx: BootstrapContext): Promise<void> {
  for (const s of BOOTSTRAP_STEPS) await s.run(ctx);
}
