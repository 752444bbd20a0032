/**
 * The seam between machines and clusters. A provisioner only produces machines that accept SSH
 * with a pinned host key; everything after that (PKI, etcd, lab-server, lab-agent) is the same
 * SSH bootstrap for VMs and bare metal, which never asks what kind of machine it got.
 */
import type { SshEndpoint } from "../ssh/endpoint.ts";
import type { Plan, PlannedNode, Role } from "../topology/plan.ts";
import type { Reporter } from "../topology/progress.ts";
import type { LabState } from "../topology/state.ts";

export interface Machine {
  name: string;
  role: Role;
  /** Address the bootstrap and the cluster use for this node. */
  address: string;
  /**
   * The machine reads the lab host's own clock (a container on this host, as nspawn machines are):
   * there is no clock to set or keep in step, so the bootstrap's clock step leaves it alone.
   */
  sharesHostClock?: boolean;
  /** How to log in: host, port, user, key, the pinned host key and the jump host if any. */
  ssh: SshEndpoint;
}

/** A planned node as a Machine that is logged into at its own address. */
export function nodeMachine(node: PlannedNode, ssh: Omit<SshEndpoint, "host">): Machine {
  return { name: node.name, role: node.role, address: node.address, ssh: { host: node.address, ...ssh } };
}

/**
 * The step every provider reports per machine once it accepts SSH with its pinned host key: where
 * provisioning ends for that node (the CLI shows the node ready on it). Declared once, here.
 */
export const MACHINE_READY_STEP = "vm.ssh-ready";

export type MachineState = "running" | "stopped" | "missing" | "unknown";

export interface MachineStatus {
  name: string;
  state: MachineState;
  detail?: string;
}

/** A lab as a whole, from its machines' states (what `lab status` prints on its first line). */
export type LabRunState = "running" | "stopped" | "partial" | "missing";

/**
 * Pure: running when every machine runs, stopped when none runs but they exist, missing when
 * none exists, else partial. `servicesStopped`: `lab stop` stopped the cluster's services on
 * machines the lab does not own (baremetal), which keep running.
 */
export function labRunState(machines: MachineStatus[], servicesStopped = false): LabRunState {
  if (machines.length === 0 || machines.every((m) => m.state === "missing")) return "missing";
  if (servicesStopped) return "stopped";
  if (machines.every((m) => m.state === "running")) return "running";
  if (machines.every((m) => m.state === "stopped")) return "stopped";
  return "partial";
}

/** How a clean power-off ended: `clean` false when the deadline passed and it was forced. */
export interface ShutdownResult {
  clean: boolean;
  /** What was still running at the deadline, or that the machine was not running. */
  detail?: string;
}

export interface ProvisionContext {
  plan: Plan;
  /** The lab's state (directory, lock already held by the caller, atomic writes). */
  state: LabState;
  reporter: Reporter;
  signal?: AbortSignal;
}

export interface Provisioner {
  readonly name: "qemu" | "libvirt" | "baremetal" | "nspawn";
  /** Creates (or adopts) every machine; idempotent, so a rerun after a crash converges. */
  create(ctx: ProvisionContext): Promise<Machine[]>;
  status(ctx: ProvisionContext): Promise<MachineStatus[]>;
  /**
   * Removes everything this lab created on the host. Must work after a failed `up` and even
   * when the state directory is gone (host resources carry the lab's name).
   */
  destroy(ctx: Omit<ProvisionContext, "plan"> & { plan?: Plan; labName: string }): Promise<void>;
  /**
   * Powers one machine off the hard way, as a lost power supply would (nothing shut down cleanly);
   * the next `create` starts it again. Providers whose machines the lab does not own (baremetal)
   * have none.
   */
  powerOff?(ctx: ProvisionContext, node: string): Promise<void>;
  /**
   * Powers one machine off cleanly: its init stops every unit and unmounts, as `poweroff` inside
   * does. Waits at most `timeoutMs`, then powers it off hard and says so (`clean: false`, naming
   * what was still running). The disks stay: the next `create` boots it again. None for machines
   * the lab does not own (baremetal): `lab stop` stops the services there only.
   */
  shutdown?(ctx: ProvisionContext, node: string, opts: { timeoutMs: number }): Promise<ShutdownResult>;
  /** Copies consoles and logs of every machine into `dir` (for `lab export logs`). */
  collectLogs?(ctx: ProvisionContext, dir: string): Promise<void>;
}
