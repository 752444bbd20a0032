/**
 * Names and command lines of one nspawn node (pure). Every host resource carries the lab's name so
 * `lab down` finds it without state: the nspawn process by `--setenv=LAB_NODE=lab:LAB/NODE` in its
 * argv (the same `lab:LAB/NODE` marker QEMU's `-name` carries), the node's cgroups by their
 * directory `lab-nspawn/LAB/NODE` in every hierarchy, its veth inside the lab's namespace (which
 * `lab down` deletes with everything in it), and its overlay mount lives only in a private mount
 * namespace that ends with the node's processes.
 */

/** The process marker; also what test/e2e/helpers.ts `leftovers()` looks for. */
export function nodeMarker(lab: string, node: string): string {
  return `lab:${lab}/${node}`;
}

export const MARKER_ENV = "LAB_NODE";

/** machinectl-style machine name (a valid hostname of at most 64 characters). */
export function machineName(lab: string, node: string): string {
  return `lab-${lab}-${node}`.slice(0, 64);
}

/** Directory of the lab's cgroups below each hierarchy's root. */
export const CGROUP_PARENT = "lab-nspawn";

export function labCgroup(lab: string): string {
  return `${CGROUP_PARENT}/${lab}`;
}

export function nodeCgroup(lab: string, node: string): string {
  return `${labCgroup(lab)}/${node}`;
}

/** The node's veth in the lab namespace (bridge side) and its peer, moved into the machine. */
export function vethNames(index: number): { bridgeSide: string; guestSide: string } {
  return { bridgeSide: `nv${index}`, guestSide: `ng${index}` };
}

/**
 * The machine's own network namespace (`ip netns` name). A lab name has no dot, so the prefix
 * `lab-LAB.` belongs to this lab alone.
 */
export function nodeNetns(lab: string, node: string): string {
  return `${nodeNetnsPrefix(lab)}${node}`;
}

export function nodeNetnsPrefix(lab: string): string {
  return `lab-${lab}.`;
}

/** Node name from an argv when it is a systemd-nspawn of `lab` (pure). */
export function nodeFromNspawnArgv(argv: string[], lab: string): string | undefined {
  if (!argv[0] || !/systemd-nspawn$/.test(argv[0])) return undefined;
  const prefix = `--setenv=${MARKER_ENV}=${nodeMarker(lab, "")}`;
  const arg = argv.find((a) => a.startsWith(prefix));
  return arg ? arg.slice(prefix.length) : undefined;
}

export interface NspawnSpec {
  lab: string;
  node: string;
  /** The merged root (overlay of the shared base and the node's upper layer). */
  root: string;
  hostname: string;
  /** The machine's network namespace (holding its end of the veth as eth0). */
  netnsPath: string;
  /** Host directory bind-mounted at /var/lib/containerd (overlayfs cannot be containerd's upper). */
  containerdDir: string;
  /** Devices bound into the machine when the host has them. */
  devices: string[];
}

/**
 * Syscalls nspawn's default filter refuses that runc and containerd use (the session keyring runc
 * creates per container; bpf for device filters).
 */
export const EXTRA_SYSCALLS = ["@keyring", "bpf", "perf_event_open"];

export function nspawnArgv(s: NspawnSpec): string[] {
  return [
    "systemd-nspawn",
    `--setenv=${MARKER_ENV}=${nodeMarker(s.lab, s.node)}`,
    `--machine=${machineName(s.lab, s.node)}`,
    `--hostname=${s.hostname}`,
    `--directory=${s.root}`,
    "--boot",
    // No systemd on the host: no machined registration, no scope unit; nspawn stays in the cgroup
    // the provider put it in (the node's limits).
    "--register=no",
    "--keep-unit",
    // Everything a node does (containerd, runc, CNI bridges, nftables, mounts) except setting the
    // clock: the realtime clock is the host's, and chrony inside would step it.
    "--capability=all",
    "--drop-capability=CAP_SYS_TIME",
    `--system-call-filter=${EXTRA_SYSCALLS.join(" ")}`,
    `--network-namespace-path=${s.netnsPath}`,
    `--bind=${s.containerdDir}:/var/lib/containerd`,
    ...s.devices.map((d) => `--bind=${d}`),
    "--resolv-conf=off",
    "--timezone=off",
    "--link-journal=no",
    "--console=read-only",
  ];
}
