/** The `lab-server` unit on every master: the apiserver over the whole etcd cluster, TLS everywhere. */
import { HOST_PATHS, LAB_SERVER_HEALTH_PORT } from "./paths.ts";
import { renderServiceUnit } from "./systemd.ts";

export interface LabServerConfig {
  /** This master's address (advertised to clients and in the `kubernetes` Endpoints). */
  address: string;
  etcdServers: string;
  serviceClusterIPRange: string;
  securePort: number;
  bindAddress?: string;
  files?: Partial<ReturnType<typeof labServerHostFiles>>;
  /** The leader-elected scheduler and controllers; without this lab-server only serves the API. */
  loops?: { clusterCIDR: string; nodeCIDRMaskSize: number; podEvictionTimeoutSeconds: number };
}

export function labServerHostFiles() {
  const d = HOST_PATHS.pki;
  return {
    etcdCA: `${d}/etcd/ca.crt`,
    etcdCert: `${d}/apiserver-etcd-client.crt`,
    etcdKey: `${d}/apiserver-etcd-client.key`,
    tlsCert: `${d}/apiserver.crt`,
    tlsKey: `${d}/apiserver.key`,
    clientCA: `${d}/ca.crt`,
    kubeletClientCert: `${d}/apiserver-kubelet-client.crt`,
    kubeletClientKey: `${d}/apiserver-kubelet-client.key`,
    loopsCert: `${d}/controller-manager.crt`,
    loopsKey: `${d}/controller-manager.key`,
    loopsKubeconfig: `${HOST_PATHS.etc}/server/controller-manager.kubeconfig`,
  };
}

export function labServerArgs(c: LabServerConfig): string[] {
  const f = { ...labServerHostFiles(), ...c.files };
  return [
    `--etcd-servers=${c.etcdServers}`,
    `--etcd-cafile=${f.etcdCA}`,
    `--etcd-certfile=${f.etcdCert}`,
    `--etcd-keyfile=${f.etcdKey}`,
    `--tls-cert-file=${f.tlsCert}`,
    `--tls-private-key-file=${f.tlsKey}`,
    `--client-ca-file=${f.clientCA}`,
    `--kubelet-client-certificate=${f.kubeletClientCert}`,
    `--kubelet-client-key=${f.kubeletClientKey}`,
    `--bind-address=${c.bindAddress ?? "0.0.0.0"}`,
    `--secure-port=${c.securePort}`,
    `--advertise-address=${c.address}`,
    `--service-cluster-ip-range=${c.serviceClusterIPRange}`,
    // keepalived's /readyz check, every 2 s, without a TLS handshake each time
    `--health-port=${LAB_SERVER_HEALTH_PORT}`,
    ...(c.loops
      ? [
          `--kubeconfig=${f.loopsKubeconfig}`,
          `--cluster-cidr=${c.loops.clusterCIDR}`,
          `--node-cidr-mask-size=${c.loops.nodeCIDRMaskSize}`,
          `--pod-eviction-timeout=${c.loops.podEvictionTimeoutSeconds}`,
        ]
      : []),
  ];
}

export function renderLabServerUnit(c: LabServerConfig): string {
  return renderServiceUnit({
    description: "lab-server (API server, scheduler, controllers)",
    after: ["network-online.target", "lab-etcd.service"],
    wants: ["network-online.target"],
    exec: [`${HOST_PATHS.bin}/lab-server`, ...labServerArgs(c)],
    restart: "always",
    limitNoFile: 65536,
  });
}
