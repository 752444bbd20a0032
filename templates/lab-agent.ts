/** The `lab-agent` unit on every node (masters too, registered with a NoSchedule taint). */
import { PAUSE_IMAGE } from "../images/oci/build.ts";
import { renderCniConfig, renderContainerdConfig } from "./containerd-config.ts";
import { HOST_PATHS } from "./paths.ts";
import { renderServiceUnit } from "./systemd.ts";

export interface LabAgentConfig {
  nodeName: string;
  nodeIP: string;
  podCIDR: string;
  /** Every apiserver URL, VIP first: the agent fails over among them. */
  apiServers: string[];
  clusterDomain: string;
  clusterDNS: string;
  serviceClusterIPRange: string;
  taints: string[];
  labels: Record<string, string>;
}

export function labAgentHostFiles() {
  return {
    kubeconfig: `${HOST_PATHS.etc}/agent/kubeconfig`,
    cert: `${HOST_PATHS.pki}/node.crt`,
    key: `${HOST_PATHS.pki}/node.key`,
    ca: `${HOST_PATHS.pki}/ca.crt`,
    servingCert: `${HOST_PATHS.pki}/node-serving.crt`,
    servingKey: `${HOST_PATHS.pki}/node-serving.key`,
    stateDir: `${HOST_PATHS.varLib}/agent`,
  };
}

export function labAgentArgs(c: LabAgentConfig): string[] {
  const f = labAgentHostFiles();
  const args = [
    `--kubeconfig=${f.kubeconfig}`,
    `--node-name=${c.nodeName}`,
    `--node-ip=${c.nodeIP}`,
    `--pod-cidr=${c.podCIDR}`,
    `--api-servers=${c.apiServers.join(",")}`,
    `--cluster-domain=${c.clusterDomain}`,
    `--cluster-dns=${c.clusterDNS}`,
    `--service-cluster-ip-range=${c.serviceClusterIPRange}`,
    `--state-dir=${f.stateDir}`,
    // logs/exec on :10250, for lab-server's kubelet-client certificate only
    `--tls-cert-file=${f.servingCert}`,
    `--tls-private-key-file=${f.servingKey}`,
    `--client-ca-file=${f.ca}`,
  ];
  if (c.taints.length) args.push(`--register-with-taints=${c.taints.join(",")}`);
  const labels = Object.entries(c.labels).map(([k, v]) => `${k}=${v}`);
  if (labels.length) args.push(`--node-labels=${labels.join(",")}`);
  return args;
}

export function renderLabAgentUnit(c: LabAgentConfig): string {
  return renderServiceUnit({
    description: `lab-agent (node ${c.nodeName})`,
    after: ["network-online.target", "containerd.service"],
    wants: ["network-online.target", "containerd.service"],
    exec: [`${HOST_PATHS.bin}/lab-agent`, ...labAgentArgs(c)],
    restart: "always",
    // Containers belong to containerd; restarting the agent must not kill them.
    extra: ["KillMode=process"],
  });
}

/** containerd and CNI on a node: Debian's containerd.service reads these default locations. */
export const NODE_CONTAINERD = {
  config: "/etc/containerd/config.toml",
  root: "/var/lib/containerd",
  state: "/run/containerd",
  socket: "/run/containerd/containerd.sock",
  cniConfDir: "/etc/cni/net.d",
  cniConf: "/etc/cni/net.d/10-lab.conflist",
  /** The image archives lab uploads before importing them (kept: an unchanged hash skips both). */
  imagesDir: `${HOST_PATHS.varLib}/images`,
} as const;

/**
 * The node's containerd config. SystemdCgroup stays false even on systemd (cgroup v2) guests:
 * lab-agent gives every pod a cgroupfs parent (`/lab-pods/pod<uid>`) and cleans those up itself;
 * runc's systemd driver accepts only `slice:prefix:name` paths and would fail every sandbox.
 * The cgroupfs driver works on cgroup v2 under systemd (as kubelet's cgroupfs driver does).
 */
export function renderNodeContainerdConfig(): string {
  return renderContainerdConfig({
    root: NODE_CONTAINERD.root,
    state: NODE_CONTAINERD.state,
    socket: NODE_CONTAINERD.socket,
    cniConfDir: NODE_CONTAINERD.cniConfDir,
    cniBinDir: "/usr/lib/cni",
    sandboxImage: PAUSE_IMAGE,
    systemdCgroup: false,
  });
}

/** Bridge + host-local on the node's pod CIDR; pods reach other nodes' pods through lab-agent's routes. */
export function renderNodeCniConfig(podCIDR: string): string {
  return renderCniConfig({ podCidr: podCIDR });
}
