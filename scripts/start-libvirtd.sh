#!/usr/bin/env bash
# Starts libvirt's daemons when they are not running. With systemd as PID 1 that is the
# libvirtd service; without it (containers, CI machines) virtlogd and libvirtd run as daemons
# started by hand. Idempotent: does nothing when libvirtd already answers.
set -euo pipefail

answers() { virsh -q -c qemu:///system uri >/dev/null 2>&1; }

if ! command -v libvirtd >/dev/null 2>&1 && [ ! -x /usr/sbin/libvirtd ]; then
  echo "libvirtd is not installed: apt-get install -o Dpkg::Options::=--force-confold" \
    "libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients" >&2
  exit 1
fi
# libvirt's network driver writes its state here (dnsmasq-base's absence once left it uncreated)
mkdir -p /var/lib/libvirt/dnsmasq
answers && exit 0

if [ -d /run/systemd/system ]; then
  systemctl start virtlogd.socket libvirtd.service
else
  mkdir -p /var/log/libvirt
  PATH="$PATH:/usr/sbin"
  # The daemons outlive this script: close every inherited descriptor above stderr first, or a
  # caller's lock (e.g. `flock FILE bash .ci/run`) or pipe stays held by them for good.
  for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    if [ "$fd" -gt 2 ] && [ "$fd" -lt 255 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
  done
  pgrep -x virtlogd >/dev/null || virtlogd -d
  pgrep -x libvirtd >/dev/null || libvirtd -d
fi

for _ in $(seq 1 50); do
  answers && exit 0
  sleep 0.2
done
echo "libvirtd started but does not answer on qemu:///system; see /var/log/libvirt/libvirtd.log" >&2
exit 1
