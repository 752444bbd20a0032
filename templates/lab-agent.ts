/** The `lab-agent` unit on every node (masters too, registered with a NoSchedule taint). */
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
