/**
 * What the provider writes into a node's upper layer before its first boot (pure): the NoCloud
 * seed where cloud-init finds it without a disk, and the few changes a machine that shares the
 * host's kernel needs. The shared base stays untouched; the image (and its cache key) is the
 * same one the VMs boot.
 */
import { stringify } from "yaml";
import { renderSeed, type SeedFiles, type SeedInput } from "../../cloud-init/seed.ts";
import { CHRONY_CONF } from "../../templates/chrony.ts";

/** cloud-init's NoCloud seed directory (found by ds-identify without any kernel argument). */
export const SEED_DIR = "var/lib/cloud/seed/nocloud";

/**
 * nspawn mounts the cgroup v1 controllers read-only; runc must create cgroups in them. Each
 * controller is mounted again inside (the machine runs in its own cgroup namespace, so a fresh
 * mount shows the node's cgroup as the root, under the node's limits). `systemd` and `unified`
 * belong to the machine's systemd and stay.
 */
export const CGROUPS_RW_SCRIPT = `#!/bin/sh
# Written by lab's nspawn provider: cgroup v1 controllers writable for containerd and runc.
set -e
for d in /sys/fs/cgroup/*; do
  n=\${d##*/}
  [ -L "$d" ] && continue
  case "$n" in systemd|unified) continue ;; esac
  mountpoint -q "$d" || continue
  if mkdir "$d/lab-rw-probe" 2>/dev/null; then
    rmdir "$d/lab-rw-probe"
  else
    umount -l "$d"
    mount -t cgroup -o "$n" cgroup "$d"
  fi
done
`;

export const CGROUPS_RW_UNIT = `[Unit]
Description=lab: cgroup controllers writable for containerd (nspawn node)
DefaultDependencies=no
After=local-fs.target
Before=containerd.service lab-agent.service sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/lab-cgroups-rw

[Install]
WantedBy=sysinit.target
`;

/** chronyd must not try to set the clock it shares with the host (and has no CAP_SYS_TIME for). */
export const CHRONY_DROPIN = `# Written by lab's nspawn provider: the machine shares the host's clock; serve and follow only.
[Service]
ExecStart=
ExecStart=/usr/sbin/chronyd -d -x -u root -f ${CHRONY_CONF}
`;

/**
 * Files of the upper layer (path relative to the root → content, mode). The seed holds the node's
 * private host key: 0600.
 */
export function upperFiles(seed: SeedFiles): { path: string; content: string; mode: number }[] {
  return [
    ...Object.entries(seed).map(([name, content]) => ({
      path: `${SEED_DIR}/${name}`,
      content,
      mode: 0o600,
    })),
    { path: "usr/local/sbin/lab-cgroups-rw", content: CGROUPS_RW_SCRIPT, mode: 0o755 },
    { path: "etc/systemd/system/lab-cgroups-rw.service", content: CGROUPS_RW_UNIT, mode: 0o644 },
    { path: "etc/systemd/system/lab-chrony.service.d/nspawn.conf", content: CHRONY_DROPIN, mode: 0o644 },
    // The VM image's fstab names /dev/vda; a machine's root is already mounted.
    { path: "etc/fstab", content: "# nspawn node: the root is mounted by the provider\n", mode: 0o644 },
  ];
}

/** Symlinks of the upper layer: enabling the cgroup unit. */
export const UPPER_LINKS: { path: string; target: string }[] = [
  {
    path: "etc/systemd/system/sysinit.target.wants/lab-cgroups-rw.service",
    target: "/etc/systemd/system/lab-cgroups-rw.service",
  },
];

/**
 * The VM seed with one change: cloud-init matches VM NICs by MAC, but it counts only devices with a
 * bus behind them as physical and waits for them forever; a veth has none. The machine's interface
 * is already called eth0 (the provider names it so in the machine's namespace), so the network
 * config matches it by name.
 */
export function nspawnSeed(s: SeedInput): SeedFiles {
  const seed = renderSeed(s);
  const network = {
    version: 2,
    ethernets: {
      eth0: {
        addresses: [`${s.address}/${s.prefix}`],
        ...(s.gateway ? { routes: [{ to: "0.0.0.0/0", via: s.gateway }] } : {}),
      },
    },
  };
  return { ...seed, "network-config": stringify(network, { version: "1.1" }) };
}
