/**
 * Where the bootstrap puts things on a machine. One table, so install, `lab down` and the docs
 * (docs/operations.md, "Bootstrap") agree on every path lab owns on a host.
 */
export const HOST_PATHS = {
  /** Configuration and certificates (root-only where secret). */
  etc: "/etc/lab",
  pki: "/etc/lab/pki",
  /** Data: the etcd member's data directory, agent state. */
  varLib: "/var/lib/lab",
  etcdData: "/var/lib/lab/etcd",
  /** Executables: the Node runtime and the bundled lab-server / lab-agent. */
  opt: "/opt/lab",
  bin: "/opt/lab/bin",
  lib: "/opt/lab/lib",
  /** systemd units lab writes. */
  unitDir: "/etc/systemd/system",
} as const;

/** The systemd units lab installs; names carry `lab-` so they never collide with a distro's. */
export const LAB_UNITS = [
  "lab-agent.service",
  "lab-keepalived.service",
  "lab-server.service",
  "lab-etcd.service",
  "lab-chrony.service",
] as const;

export const ETCD_CLIENT_PORT = 2379;
export const ETCD_PEER_PORT = 2380;
/** lab-server's plain-HTTP /readyz on 127.0.0.1 only, for keepalived's check (no TLS handshake). */
export const LAB_SERVER_HEALTH_PORT = 6080;
