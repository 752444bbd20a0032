/**
 * etcd member configuration: the flags are computed here, once, and used both by the systemd unit
 * on the masters and by the integration test that runs the same flags as plain processes.
 */
import { ETCD_CLIENT_PORT, ETCD_PEER_PORT, HOST_PATHS } from "./paths.ts";
import { renderServiceUnit } from "./systemd.ts";

export interface EtcdMember {
  name: string;
  address: string;
  clientPort?: number;
  peerPort?: number;
}

export interface EtcdMemberConfig {
  member: EtcdMember;
  /** Every member of the initial cluster, this one included. */
  cluster: EtcdMember[];
  /** Same for every member of one cluster; keeps two labs' members from joining each other. */
  clusterToken: string;
  dataDir: string;
  /** Certificate files as they lie on the machine running the member. */
  files: { ca: string; serverCert: string; serverKey: string; peerCert: string; peerKey: string };
  /** `new` for a fresh cluster; `existing` when a member rejoins an existing one. */
  state?: "new" | "existing";
  /** Also listen on https://127.0.0.1:CLIENT_PORT for local clients (default true). */
  listenLocal?: boolean;
  /** Machine architecture (`uname -m`); etcd 3.4 refuses arm64 unless told it is fine. */
  arch?: string;
}

export const peerURL = (m: EtcdMember) => `https://${m.address}:${m.peerPort ?? ETCD_PEER_PORT}`;
export const clientURL = (m: EtcdMember) => `https://${m.address}:${m.clientPort ?? ETCD_CLIENT_PORT}`;

/** `--initial-cluster` value: `name=https://ip:2380,...` in the given order. */
export function etcdInitialCluster(cluster: EtcdMember[]): string {
  if (![1, 3, 5].includes(cluster.length)) {
    throw new Error(`an etcd cluster needs 1, 3 or 5 members (got ${cluster.length})`);
  }
  return cluster.map((m) => `${m.name}=${peerURL(m)}`).join(",");
}

/** `--etcd-servers`-style list of every member's client URL. */
export function etcdClientURLs(cluster: EtcdMember[]): string {
  return cluster.map(clientURL).join(",");
}

/** The member's command line (flags, not a config file, so `ps` and the journal show everything). */
export function etcdArgs(c: EtcdMemberConfig): string[] {
  const m = c.member;
  const clientPort = m.clientPort ?? ETCD_CLIENT_PORT;
  return [
    `--name=${m.name}`,
    `--data-dir=${c.dataDir}`,
    `--listen-peer-urls=${peerURL(m)}`,
    `--initial-advertise-peer-urls=${peerURL(m)}`,
    // Loopback too, so a local client (health checks, lab-server on the same master) needs no route.
    `--listen-client-urls=${clientURL(m)}${c.listenLocal === false ? "" : `,https://127.0.0.1:${clientPort}`}`,
    `--advertise-client-urls=${clientURL(m)}`,
    `--initial-cluster=${etcdInitialCluster(c.cluster)}`,
    `--initial-cluster-token=${c.clusterToken}`,
    `--initial-cluster-state=${c.state ?? "new"}`,
    `--client-cert-auth=true`,
    `--trusted-ca-file=${c.files.ca}`,
    `--cert-file=${c.files.serverCert}`,
    `--key-file=${c.files.serverKey}`,
    `--peer-client-cert-auth=true`,
    `--peer-trusted-ca-file=${c.files.ca}`,
    `--peer-cert-file=${c.files.peerCert}`,
    `--peer-key-file=${c.files.peerKey}`,
    // Three TCG masters on two shared host cores (etcd + lab-server each) delay heartbeats by
    // several seconds: with 250/2500 ms the members churned through 80+ elections and never
    // answered health checks. Measured on the default topology; costs a slower re-election.
    `--heartbeat-interval=1000`,
    `--election-timeout=10000`,
    `--snapshot-count=10000`,
    `--logger=zap`,
  ];
}

/** Where the etcd certificates of a master lie on the master. */
export function etcdHostFiles(): EtcdMemberConfig["files"] {
  const d = `${HOST_PATHS.pki}/etcd`;
  return {
    ca: `${d}/ca.crt`,
    serverCert: `${d}/server.crt`,
    serverKey: `${d}/server.key`,
    peerCert: `${d}/peer.crt`,
    peerKey: `${d}/peer.key`,
  };
}

export function renderEtcdUnit(c: EtcdMemberConfig): string {
  return renderServiceUnit({
    description: `lab etcd member ${c.member.name}`,
    after: ["network-online.target"],
    wants: ["network-online.target"],
    exec: ["/usr/bin/etcd", ...etcdArgs(c)],
    user: "etcd",
    type: "notify",
    environment: c.arch === "aarch64" || c.arch === "arm64" ? { ETCD_UNSUPPORTED_ARCH: "arm64" } : {},
    limitNoFile: 65536,
  });
}
