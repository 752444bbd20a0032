/**
 * What the image builder writes into the guest root filesystem, as data: pure, so it is part of
 * the image cache key and unit-testable. Everything here serves a lean first boot under TCG
 * (measured in docs/images.md): cloud-init NoCloud only and init stage only, ed25519 host key
 * only, a small initrd, and units that must stay off masked (an empty /etc/machine-id makes the
 * first boot run `systemctl preset-all`, which would re-enable merely disabled units).
 */

/** Units linked to /dev/null. etcd and containerd stay masked until the bootstrap unmasks them. */
export const MASKED_UNITS = [
  "etcd.service",
  "containerd.service",
  "keepalived.service",
  // lab runs its own chrony unit (bootstrap step "clock"); the package's would chase an internet pool.
  "chrony.service",
  "e2scrub_all.timer",
  "e2scrub_reap.service",
  "apt-daily.timer",
  "apt-daily-upgrade.timer",
  "dpkg-db-backup.timer",
  "fstrim.timer",
  "logrotate.timer",
  "getty@tty1.service",
  // cloud-init's config and final stages: each costs a Python start-up (~5 s under TCG) and the
  // lab needs nothing from them; users, keys, hostname and network happen in the init stages.
  "cloud-config.service",
  "cloud-final.service",
  // Static addresses need no waiting; this unit can stall boot for minutes on an unused link.
  "systemd-networkd-wait-online.service",
];

/** Units enabled in the image (cloud-init renders network config for systemd-networkd). */
export const ENABLED_UNITS = ["systemd-networkd.service", "ssh.service"];

/** Kernel command line for direct kernel boot (root is the whole virtio disk, no partitions). */
export const KERNEL_CMDLINE = "root=/dev/vda rw console=ttyS0,115200 loglevel=4 systemd.show_status=auto";

export const CLOUD_CFG = `# lab: NoCloud only, init stages only (see docs/images.md for the boot measurements)
datasource_list: [NoCloud, None]
disable_root: true
preserve_hostname: false
manage_etc_hosts: true
ssh_deletekeys: true
# Host keys come pre-generated in the seed; if a seed has none, make only ed25519 (RSA costs ~5 s).
ssh_genkeytypes: [ed25519]
cloud_init_modules:
  - seed_random
  - write_files
  - resizefs
  - set_hostname
  - update_hostname
  - update_etc_hosts
  - users_groups
  - ssh
cloud_config_modules: []
cloud_final_modules: []
system_info:
  network:
    renderers: [networkd]
`;

/** Files written into the rootfs (path relative to its root → content). */
export function guestFiles(): Record<string, string> {
  return {
    "etc/cloud/cloud.cfg.d/99-lab.cfg": CLOUD_CFG,
    "etc/initramfs-tools/conf.d/lab.conf": "MODULES=list\nCOMPRESS=gzip\n",
    "etc/initramfs-tools/modules": "virtio_pci\nvirtio_blk\nvirtio_net\next4\n",
    "etc/fstab": "/dev/vda / ext4 defaults,noatime 0 0\n",
    "etc/ssh/sshd_config.d/lab.conf":
      "HostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\nUseDNS no\n",
    "etc/systemd/system-preset/10-lab.preset":
      ENABLED_UNITS.map((u) => `enable ${u}`).join("\n") +
      "\n" +
      MASKED_UNITS.map((u) => `disable ${u}`).join("\n") +
      "\n",
    "etc/hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
    "etc/systemd/journald.conf.d/lab.conf": "[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n",
    "etc/apt/sources.list": "deb http://deb.debian.org/debian bookworm main\n",
  };
}
