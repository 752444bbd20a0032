/**
 * Names of everything a libvirt lab creates on the hypervisor. All carry the lab's name, so
 * `lab down` finds them without the lab's state; domains are matched by their metadata marker.
 */

/** Debian's libvirt images directory: qemu (user libvirt-qemu) can reach it, unlike /root. */
export const POOL_PARENT = "/var/lib/libvirt/images";

export const DEFAULT_URI = "qemu:///system";

export const domainName = (lab: string, node: string) => `lab-${lab}-${node}`;
export const networkName = (lab: string) => `lab-${lab}`;
export const poolName = (lab: string) => `lab-${lab}`;
export const poolPath = (lab: string) => `${POOL_PARENT}/${poolName(lab)}`;
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
