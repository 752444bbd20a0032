/**
 * containerd's config.toml (version 2, containerd 1.6) and the CNI network config for one node.
 * Pure renderers: the caller writes the files.
 */

export interface ContainerdConfigInput {
  /** Persistent state (images, snapshots, metadata). */
  root: string;
  /** Runtime state (sockets, shims). */
  state: string;
  /** The gRPC unix socket, also the CRI endpoint. */
  socket: string;
  /** Directory with the CNI config lists. */
  cniConfDir: string;
  /** Directory with the CNI plugin binaries; Debian installs them in /usr/lib/cni. */
  cniBinDir?: string;
  /** The pause image, built by images/oci and imported before the first pod. */
  sandboxImage: string;
  /** runc's state root; keep it under `state` so several containerds never share it. */
  runcRoot?: string;
  /** true on pure cgroup v2 hosts booted with systemd (Debian 12 guests); false on cgroupfs hosts. */
  systemdCgroup?: boolean;
  /** Where registry hosts.toml files live, for an in-lab plain-HTTP registry. */
  registryConfigPath?: string;
  /**
   * Pod network namespaces under `state`/io.containerd.grpc.v1.cri/netns instead of /run/netns. For
   * a containerd that shares a host with others (tests): its pods' namespaces go with its state dir.
   * Nodes keep /run/netns, where `ip netns` shows them.
   */
  netnsUnderState?: boolean;
  /**
   * Where containerd's streaming server (CRI Exec/Attach/PortForward URLs) listens: loopback, as
   * lab-agent shares the node's network namespace. Tests whose agent runs outside the node's
   * namespace give the node's own address there.
   */
  streamServerAddress?: string;
}

const q = (s: string): string => JSON.stringify(s);

export function renderContainerdConfig(c: ContainerdConfigInput): string {
  return `# Rendered by lab (templates/containerd-config.ts). Do not edit: lab-agent rewrites it.
version = 2
root = ${q(c.root)}
state = ${q(c.state)}

[grpc]
  address = ${q(c.socket)}

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = ${q(`${c.root}/opt`)}

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = ${q(c.sandboxImage)}
    # Root may lack CAP_SYS_RESOURCE (containers, some VMs): without this, RunPodSandbox fails while
    # setting oom_score_adj -998 ("can't get final child's PID from pipe: EOF").
    restrict_oom_score_adj = true
    stream_server_address = ${q(c.streamServerAddress ?? "127.0.0.1")}
    stream_server_port = "0"
    enable_selinux = false
    tolerate_missing_hugetlb_controller = true${c.netnsUnderState ? "\n    netns_mounts_under_state_dir = true" : ""}

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = ${q(c.cniBinDir ?? "/usr/lib/cni")}
      conf_dir = ${q(c.cniConfDir)}
      max_conf_num = 1

    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "runc"
          Root = ${q(c.runcRoot ?? `${c.state}/runc`)}
          SystemdCgroup = ${c.systemdCgroup ? "true" : "false"}

    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = ${q(c.registryConfigPath ?? "")}
`;
}

export interface CniConfigInput {
  /** The node's pod CIDR, e.g. 10.244.1.0/24. Pods get addresses from it. */
  podCidr: string;
  /** Linux bridge name on the node. */
  bridge?: string;
  /** host-local's allocation store; defaults to the plugin's own /var/lib/cni/networks. */
  ipamDataDir?: string;
  /** NAT pod traffic leaving the node (not for traffic to other pod CIDRs routed without NAT). */
  ipMasq?: boolean;
}

/** The first usable address of a CIDR, used as the bridge's gateway address. */
export function gatewayOf(cidr: string): string {
  const [addr] = cidr.split("/");
  const octets = addr!.split(".").map(Number);
  octets[3] = (octets[3]! & 0xff) + 1;
  return octets.join(".");
}

/** A CNI conflist: bridge + host-local IPAM on the pod CIDR, plus portmap for hostPort. */
export function renderCniConfig(c: CniConfigInput): string {
  const conf = {
    cniVersion: "0.4.0",
    name: "lab-pods",
    plugins: [
      {
        type: "bridge",
        bridge: c.bridge ?? "lab0",
        isGateway: true,
        ipMasq: c.ipMasq ?? false,
        hairpinMode: true,
        ipam: {
          type: "host-local",
          ranges: [[{ subnet: c.podCidr, gateway: gatewayOf(c.podCidr) }]],
          routes: [{ dst: "0.0.0.0/0" }],
          ...(c.ipamDataDir ? { dataDir: c.ipamDataDir } : {}),
        },
      },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  };
  return JSON.stringify(conf, null, 2) + "\n";
}
