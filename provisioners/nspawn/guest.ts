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
# nspawn leaves /proc/sys read-only; the machine has its own network namespace, so its
# /proc/sys/net is its own: writable for the CNI bridge (ip_forward) and the service proxy.
if ! ( : > /proc/sys/net/ipv4/ip_forward ) 2>/dev/null; then
  mount --bind /proc/sys/net /proc/sys/net
  mount -o remount,bind,rw /proc/sys/net
fi
`;

export const CGROUPS_RW_UNIT = `[Unit]
Description=lab: cgroup controllers and /proc/sys/net writable for containerd and CNI (nspawn node)
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

/** The base's account files, read by the provider to append the login user (pure input). */
export interface AccountFiles {
  passwd: string;
  group: string;
  shadow: string;
  gshadow: string;
}

export interface DirectFile {
  path: string;
  content: string;
  mode: number;
  /** uid:gid when not root. */
  owner?: [number, number];
}

/** The first uid (and gid) from 1000 that neither file uses (pure). */
export function freeId(passwd: string, group: string): number {
  const used = new Set<number>();
  for (const l of passwd.split("\n")) if (l) used.add(Number(l.split(":")[2]));
  for (const l of group.split("\n")) if (l) used.add(Number(l.split(":")[2]));
  let id = 1000;
  while (used.has(id)) id++;
  return id;
}

const withLine = (text: string, name: string, line: string): string => {
  const lines = text.split("\n").filter((l) => l && !l.startsWith(`${name}:`));
  return [...lines, line].join("\n") + "\n";
};

/**
 * What cloud-init's init stages make of the seed, written straight into the upper layer (pure):
 * hostname and /etc/hosts, the login user with the lab's key and passwordless sudo (its password
 * locked), the pinned host key, and eth0's static address for systemd-networkd. cloud-init is then
 * disabled in the machine: its two Python stages cost ~7 s each on a loaded 2-core host, most of
 * the boot. Set LAB_NSPAWN_CLOUD_INIT=1 to boot through the NoCloud seed directory instead.
 */
export function directFiles(s: SeedInput, base: AccountFiles): DirectFile[] {
  const others = (t: string) =>
    t
      .split("\n")
      .filter((l) => !l.startsWith(`${s.user}:`))
      .join("\n");
  const id = freeId(others(base.passwd), others(base.group));
  const home = `/home/${s.user}`;
  const net = [
    "# Written by lab's nspawn provider (what cloud-init would render from the seed)",
    "[Match]",
    "Name=eth0",
    "",
    "[Network]",
    `Address=${s.address}/${s.prefix}`,
    ...(s.gateway ? [`Gateway=${s.gateway}`] : []),
    "",
  ].join("\n");
  const shadowGid = Number(/^shadow:[^:]*:(\d+):/m.exec(base.group)?.[1] ?? 0);
  const priv = s.hostKey.privateKey.endsWith("\n") ? s.hostKey.privateKey : s.hostKey.privateKey + "\n";
  return [
    { path: "etc/hostname", content: `${s.hostname}\n`, mode: 0o644 },
    {
      path: "etc/hosts",
      content: `127.0.0.1 localhost\n127.0.1.1 ${s.hostname}.${s.lab}.lab ${s.hostname}\n::1 localhost ip6-localhost ip6-loopback\n`,
      mode: 0o644,
    },
    {
      path: "etc/passwd",
      content: withLine(base.passwd, s.user, `${s.user}:x:${id}:${id}::${home}:/bin/bash`),
      mode: 0o644,
    },
    { path: "etc/group", content: withLine(base.group, s.user, `${s.user}:x:${id}:`), mode: 0o644 },
    {
      path: "etc/shadow",
      content: withLine(base.shadow, s.user, `${s.user}:*:20000:0:99999:7:::`),
      mode: 0o640,
      owner: [0, shadowGid],
    },
    {
      path: "etc/gshadow",
      content: withLine(base.gshadow, s.user, `${s.user}:!::`),
      mode: 0o640,
      owner: [0, shadowGid],
    },
    { path: `etc/sudoers.d/90-lab-${s.user}`, content: `${s.user} ALL=(ALL) NOPASSWD:ALL\n`, mode: 0o440 },
    {
      path: `${home.slice(1)}/.ssh/authorized_keys`,
      content: s.authorizedKey.trim() + "\n",
      mode: 0o600,
      owner: [id, id],
    },
    { path: "etc/ssh/ssh_host_ed25519_key", content: priv, mode: 0o600 },
    { path: "etc/ssh/ssh_host_ed25519_key.pub", content: s.hostKey.publicKey.trim() + "\n", mode: 0o644 },
    { path: "etc/systemd/network/10-lab-eth0.network", content: net, mode: 0o644 },
    {
      path: "etc/cloud/cloud-init.disabled",
      content: "lab: configured by the nspawn provider\n",
      mode: 0o644,
    },
  ];
}

/** Directories of the user's home that need the user as owner (relative to the root). */
export function homeDirs(user: string): string[] {
  return [`home/${user}`, `home/${user}/.ssh`];
}
