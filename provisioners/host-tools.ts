/**
 * What the host needs, and which Debian package brings it. `lab doctor` checks this table and
 * `lab doctor --fix` installs what is missing; .ci/run goes through the same path, so a fresh
 * machine and CI agree. `group` says who needs it: running labs, libvirt labs, or the test suites.
 */
export type ToolGroup = "lab" | "libvirt" | "test";

export interface HostTool {
  /** Executable looked up on PATH (or an absolute path for files that are not on PATH). */
  command: string;
  /** Debian package that provides it. */
  pkg: string;
  group: ToolGroup;
  why: string;
}

export const HOST_TOOLS: HostTool[] = [
  { command: "qemu-system-x86_64", pkg: "qemu-system-x86", group: "lab", why: "runs the VMs" },
  {
    command: "qemu-img",
    pkg: "qemu-utils",
    group: "lab",
    why: "creates qcow2 base images and per-VM overlays",
  },
  { command: "debootstrap", pkg: "debootstrap", group: "lab", why: "builds the Debian guest image" },
  {
    command: "mkfs.ext4",
    pkg: "e2fsprogs",
    group: "lab",
    why: "builds the guest filesystem without loop mounts",
  },
  { command: "genisoimage", pkg: "genisoimage", group: "lab", why: "writes the cloud-init NoCloud seed" },
  { command: "ip", pkg: "iproute2", group: "lab", why: "lab network namespaces, bridges and taps" },
  { command: "ssh-keygen", pkg: "openssh-client", group: "lab", why: "generates lab and host SSH keys" },
  { command: "ssh", pkg: "openssh-client", group: "lab", why: "`lab ssh`" },
  {
    command: "systemd-nspawn",
    pkg: "systemd-container",
    group: "lab",
    why: "runs the nodes of provider nspawn (native speed where KVM is missing)",
  },
  { command: "zstd", pkg: "zstd", group: "lab", why: "unpacks the guest kernel modules for the initrd" },
  {
    command: "libvirtd",
    pkg: "libvirt-daemon-system",
    group: "libvirt",
    why: "the libvirt daemon (qemu:///system); start it with scripts/start-libvirtd.sh",
  },
  {
    command: "virt-qemu-run",
    pkg: "libvirt-daemon-driver-qemu",
    group: "libvirt",
    why: "libvirt's QEMU driver: runs the lab's domains",
  },
  {
    command: "virsh",
    pkg: "libvirt-clients",
    group: "libvirt",
    why: "libvirt networks, storage pools and volumes",
  },
  {
    command: "dnsmasq",
    pkg: "dnsmasq-base",
    group: "libvirt",
    why: "libvirt's network driver keeps its state under /var/lib/libvirt/dnsmasq (a network start fails without it)",
  },
  {
    command: "virt-ssh-helper",
    pkg: "libvirt-daemon",
    group: "libvirt",
    why: "hypervisor side of qemu+ssh URIs (libvirt's SSH transport falls back to nc without it)",
  },
  {
    command: "/usr/include/libvirt/libvirt.h",
    pkg: "libvirt-dev",
    group: "libvirt",
    why: "@unraid/libvirt compiles against it at `npm ci` (install before npm ci)",
  },
  { command: "g++", pkg: "g++", group: "libvirt", why: "compiles the @unraid/libvirt binding at `npm ci`" },
  { command: "make", pkg: "make", group: "libvirt", why: "compiles the @unraid/libvirt binding at `npm ci`" },
  {
    command: "as",
    pkg: "binutils",
    group: "test",
    why: "libvirt tests assemble a trivial multiboot kernel",
  },
  { command: "etcd", pkg: "etcd-server", group: "test", why: "integration tests start a real etcd" },
  { command: "etcdctl", pkg: "etcd-client", group: "test", why: "integration tests inspect etcd" },
  {
    command: "sshd",
    pkg: "openssh-server",
    group: "test",
    why: "integration tests start real SSH test hosts",
  },
  {
    command: "sudo",
    pkg: "sudo",
    group: "test",
    why: "SSH test hosts have a login with and one without sudo",
  },
  { command: "openssl", pkg: "openssl", group: "test", why: "PKI tests verify certificates with openssl" },
  {
    command: "keepalived",
    pkg: "keepalived",
    group: "test",
    why: "tests check the rendered VIP configuration with keepalived -t",
  },
  {
    command: "systemd-analyze",
    pkg: "systemd",
    group: "test",
    why: "tests check the rendered units with systemd-analyze verify",
  },
  { command: "containerd", pkg: "containerd", group: "test", why: "agent tests run real containers" },
  { command: "runc", pkg: "runc", group: "test", why: "the OCI runtime under containerd" },
  {
    command: "/usr/lib/cni/bridge",
    pkg: "containernetworking-plugins",
    group: "test",
    why: "pod networking (CNI)",
  },
  { command: "nft", pkg: "nftables", group: "test", why: "the service proxy" },
  {
    command: "busybox",
    pkg: "busybox-static",
    group: "lab",
    why: "lab up builds the pause and sample images every node imports",
  },
  { command: "skopeo", pkg: "skopeo", group: "test", why: "tests check the project's OCI image archives" },
  {
    command: "kubectl",
    pkg: "kubernetes-client",
    group: "test",
    why: "tests drive the API with stock kubectl",
  },
  {
    command: "/usr/lib/python3/dist-packages/kubernetes/__init__.py",
    pkg: "python3-kubernetes",
    group: "test",
    why: "tests drive the API with Debian's Python client (list, watch, server-side apply)",
  },
];
