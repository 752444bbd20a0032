/**
 * The seam between machines and clusters. A provisioner only produces machines that accept SSH
 * with a pinned host key; everything after that (PKI, etcd, lab-server, lab-agent) is the same
 * SSH bootstrap for VMs and bare metal, which never asks what kind of machine it got.
 */
import type { Plan, Role } from "../topology/plan.ts";
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
  ssh: {
    host: string;
    port: number;
    user: string;
    /** Path of the private key file (mode 0600). */
    privateKeyPath: string;
    /** Pinned host public key in OpenSSH form (`ssh-ed25519 AAAA...`); never trust-on-first-use. */
    hostKey: string;
    /**
     * Reach the machine through this SSH host (a remote hypervisor whose lab network only it can
     * reach): the connection is forwarded from there to host:port. Pinned like the machine itself.
     */
    jump?: SshJump;
  };
}

export interface SshJump {
  host: string;
  port: number;
  user: string;
  privateKeyPath: string;
  /** Pinned host key: an OpenSSH public key or a `SHA256:` fingerprint; never trust-on-first-use. */
  hostKey: string;
}

export type MachineState = "running" | "stopped" | "missing" | "unknown";

export interface MachineStatus {
  name: string;
  state: MachineState;
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
  /** Copies consoles and logs of every machine into `dir` (for `lab export logs`). */
  collectLogs?(ctx: ProvisionContext, dir: string): Promise<void>;
}
