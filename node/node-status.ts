/**
 * What the agent registers: the Node object (labels, taints, pod CIDR), its status (addresses,
 * capacity, node info, conditions) and its Lease. Pure builders; node/heartbeat.ts does the I/O.
 */
import { microTime } from "../lib/time.ts";
import type {
  V1Lease,
  V1Node,
  V1NodeCondition,
  V1NodeStatus,
  V1NodeSystemInfo,
  V1Taint,
} from "@kubernetes/client-node";

/** The version the agent reports as kubeletVersion (the server says v1.32.0-lab too). */
export const AGENT_VERSION = "v1.32.0-lab";
export const LEASE_NAMESPACE = "kube-node-lease";
export const LEASE_DURATION_SECONDS = 40;

export interface NodeRegistration {
  nodeName: string;
  nodeIP: string;
  podCIDR?: string;
  labels: Record<string, string>;
  taints: V1Taint[];
  capacity: { cpu: string; memory: string; pods: string };
  nodeInfo: V1NodeSystemInfo;
  /** The agent's HTTPS port (logs, exec), published as daemonEndpoints.kubeletEndpoint.Port. */
  kubeletPort?: number;
}

/** `key=value:Effect` or `key:Effect`, comma separated (kubelet's --register-with-taints). */
export function parseTaints(text: string): V1Taint[] {
  return text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const m = /^([^=:]+)(?:=([^:]*))?:(NoSchedule|PreferNoSchedule|NoExecute)$/.exec(s);
      if (!m) throw new Error(`invalid taint "${s}": want key[=value]:NoSchedule|PreferNoSchedule|NoExecute`);
      return { key: m[1]!, ...(m[2] ? { value: m[2] } : {}), effect: m[3]! };
    });
}

/** `key=value` (value may be empty), comma separated. */
export function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of text
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean)) {
    const eq = s.indexOf("=");
    if (eq <= 0) throw new Error(`invalid label "${s}": want key=value`);
    out[s.slice(0, eq)] = s.slice(eq + 1);
  }
  return out;
}

export function nodeArch(arch: string): string {
  return arch === "x64" ? "amd64" : arch;
}

/** The labels every node carries, then the configured ones (which win). */
export function nodeLabels(
  reg: Pick<NodeRegistration, "nodeName" | "labels" | "nodeInfo">,
): Record<string, string> {
  return {
    "kubernetes.io/hostname": reg.nodeName,
    "kubernetes.io/os": reg.nodeInfo.operatingSystem,
    "kubernetes.io/arch": reg.nodeInfo.architecture,
    ...reg.labels,
  };
}

/**
 * The Node to create, or `existing` with our labels and taints merged in. A pod CIDR already set
 * (by an IPAM controller, or an earlier run) is kept: spec.podCIDR never changes under pods.
 */
export function desiredNode(reg: NodeRegistration, existing?: V1Node): V1Node {
  const spec = { ...(existing?.spec ?? {}) };
  if (!spec.podCIDR && reg.podCIDR) {
    spec.podCIDR = reg.podCIDR;
    spec.podCIDRs = [reg.podCIDR];
  }
  const taints = [...(spec.taints ?? [])];
  for (const t of reg.taints)
    if (!taints.some((x) => x.key === t.key && x.effect === t.effect)) taints.push(t);
  if (taints.length) spec.taints = taints;
  return {
    apiVersion: "v1",
    kind: "Node",
    ...(existing ?? {}),
    metadata: {
      ...(existing?.metadata ?? {}),
      name: reg.nodeName,
      labels: { ...(existing?.metadata?.labels ?? {}), ...nodeLabels(reg) },
    },
    spec,
  };
}

export interface Readiness {
  ready: boolean;
  reason: string;
  message: string;
}

function condition(
  type: string,
  status: boolean,
  reason: string,
  message: string,
  now: Date,
  previous: V1NodeCondition[] | undefined,
): V1NodeCondition {
  const s = status ? "True" : "False";
  const prev = previous?.find((c) => c.type === type);
  return {
    type,
    status: s,
    reason,
    message,
    lastHeartbeatTime: now,
    // a transition time moves only when the status does
    lastTransitionTime: prev && prev.status === s && prev.lastTransitionTime ? prev.lastTransitionTime : now,
  };
}

export function nodeStatus(
  reg: NodeRegistration,
  readiness: Readiness,
  now: Date,
  previous?: V1NodeStatus,
): V1NodeStatus {
  const prev = previous?.conditions;
  return {
    addresses: [
      { type: "InternalIP", address: reg.nodeIP },
      { type: "Hostname", address: reg.nodeName },
    ],
    capacity: { ...reg.capacity },
    allocatable: { ...reg.capacity },
    nodeInfo: reg.nodeInfo,
    daemonEndpoints: { kubeletEndpoint: { Port: reg.kubeletPort ?? 10250 } },
    conditions: [
      condition(
        "MemoryPressure",
        false,
        "AgentHasSufficientMemory",
        "lab-agent has sufficient memory available",
        now,
        prev,
      ),
      condition("DiskPressure", false, "AgentHasNoDiskPressure", "lab-agent has no disk pressure", now, prev),
      condition(
        "PIDPressure",
        false,
        "AgentHasSufficientPID",
        "lab-agent has sufficient PID available",
        now,
        prev,
      ),
      condition("Ready", readiness.ready, readiness.reason, readiness.message, now, prev),
    ],
  };
}

/** The Ready condition of a status, for change detection. */
export function readyOf(status: V1NodeStatus | undefined): string | undefined {
  const c = status?.conditions?.find((x) => x.type === "Ready");
  return c ? `${c.status}/${c.reason}/${c.message}` : undefined;
}

/** The node's Lease renewed at `now` (`existing` keeps its acquireTime and resourceVersion). */
export function renewedLease(nodeName: string, now: Date, existing?: V1Lease): V1Lease {
  return {
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: { ...(existing?.metadata ?? {}), name: nodeName, namespace: LEASE_NAMESPACE },
    spec: {
      ...(existing?.spec ?? {}),
      holderIdentity: nodeName,
      leaseDurationSeconds: LEASE_DURATION_SECONDS,
      // MicroTime on the wire; the client-node type says Date
      renewTime: microTime(now) as unknown as Date,
      ...(existing?.spec?.acquireTime ? {} : { acquireTime: microTime(now) as unknown as Date }),
    },
  };
}
