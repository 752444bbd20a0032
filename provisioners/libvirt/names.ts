/**
 * Names of everything a libvirt lab creates on the hypervisor. All carry the lab's name, so
 * `lab down` finds them without the lab's state; domains are matched by their metadata marker.
 */

/** Debian's libvirt images directory: qemu (user libvirt-qemu) can reach it, unlike /root. */
export const POOL_PARENT = "/var/lib/libvirt/images";

export const DEFAULT_URI = "qemu:///system";

export const domainName = (lab: string, node: string) => `lab-${lab}-${node}`;
/**
 * `tag` is "" for a lab on one hypervisor, else its site's tag (see placement.ts): two URIs that
 * reach one libvirtd must not share a network or a pool.
 */
export const networkName = (lab: string, tag = "") => `lab-${lab}${tag}`;
export const poolName = (lab: string, tag = "") => `lab-${lab}${tag}`;
export const poolPath = (lab: string, tag = "") => `${POOL_PARENT}/${poolName(lab, tag)}`;
/**
 * Whether a network or pool name is one of the lab's, on any of its hypervisors. Lab names have
 * no dots, so `lab-a.<tag>` cannot be lab "a-b"'s.
 */
export const isLabObjectName = (lab: string, name: string) =>
  name === `lab-${lab}` || name.startsWith(`lab-${lab}.`);
/** Bridge names are limited to 15 characters: use the lab's 6-character id. */
export const bridgeName = (labId: string) => `labv-${labId}`;

/** Volume names inside the lab's pool. */
export const volumes = {
  base: "base.qcow2",
  kernel: "vmlinuz",
  initrd: "initrd.img",
  disk: (node: string) => `${node}.qcow2`,
  seed: (node: string) => `${node}-seed.img`,
  console: (node: string) => `${node}.console.log`,
};

/** True for URIs whose hypervisor is this machine (no host part): its bridges are reachable here. */
export function isLocalUri(uri: string): boolean {
  const m = /^[a-z0-9+]+:\/\/([^/]*)\//i.exec(uri);
  return m !== null && m[1] === "";
}
