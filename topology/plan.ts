/**
 * The planner: a pure function from a topology to every name, address, MAC and size a lab will
 * use. Same topology (and same `taken` subnets), same plan; nothing here touches the machine.
 */
import { createHash } from "node:crypto";
import {
  cidrSize,
  contains,
  formatCidr,
  formatIPv4,
  mustParseCidr,
  overlaps,
  parseIPv4,
  subnet,
  type Cidr,
} from "../lib/ipv4.ts";
import { parseSize, toMiB } from "../lib/quantity.ts";
import type { Lab, NodeSpec, Provider } from "./schema.ts";

/** Pool that lab subnets are derived from when spec.network.cidr is not set: 2048 × /24. */
export const LAB_SUBNET_POOL = "10.200.0.0/13";
export const GATEWAY_OFFSET = 1;
export const VIP_OFFSET = 10;
export const MASTER_OFFSET = 11;
export const WORKER_OFFSET = 21;
export const API_SERVER_PORT = 6443;

export type Role = "master" | "worker";

export interface PlannedNode {
  name: string;
  role: Role;
  /** Position in the lab (0-based, masters first); decides the tap, pod CIDR and MAC. */
  index: number;
  address: string;
  mac: string;
  cpus: number;
  memoryMiB: number;
  diskMiB: number;
  podCIDR: string;
  labels: Record<string, string>;
  /** libvirt: the node's own hypervisor URI; spec.provider.uri when absent. */
  uri?: string;
  ssh: { port: number; user: string; key?: string; hostKey?: string; acceptNewHostKey: boolean };
}

export interface Plan {
  lab: string;
  /** Short stable id from the lab name, for host names that must be ≤ 15 characters. */
  id: string;
  provider: Provider;
  image: string;
  network: {
    cidr: string;
    prefix: number;
    /** True when the subnet came from the lab name rather than the file. */
    derived: boolean;
    gateway: string;
    vip: string;
    /** Host resources, each carrying the lab's name or id so `lab down` finds them without state. */
    netns: string;
    hostVeth: string;
  };
  cluster: {
    podCIDR: string;
    serviceCIDR: string;
    domain: string;
    nodeCIDRMaskSize: number;
    podEvictionTimeoutSeconds: number;
    apiServerPort: number;
    /** ClusterIP of the `kubernetes` Service: the first address of the service CIDR. */
    kubernetesServiceIP: string;
    /** ClusterIP reserved for cluster DNS: the tenth address of the service CIDR. */
    dnsServiceIP: string;
  };
  masters: PlannedNode[];
  workers: PlannedNode[];
  nodes: PlannedNode[];
}

export interface PlanOptions {
  /** Subnets already in use on the host; a derived lab subnet skips them. */
  taken?: string[];
}

export function labId(name: string): string {
  return createHash("sha256").update(name).digest("hex").slice(0, 6);
}

/** The lab subnet derived from the name: a hashed slot in the pool, probing past taken subnets. */
export function deriveLabCidr(name: string, taken: string[] = []): string {
  const pool = mustParseCidr(LAB_SUBNET_POOL);
  const slots = cidrSize(pool) / 256;
  const start = createHash("sha256").update(`subnet:${name}`).digest().readUInt32BE(0) % slots;
  const takenCidrs = taken.map(mustParseCidr);
  for (let i = 0; i < slots; i++) {
    const candidate = subnet(pool, 24, (start + i) % slots);
    if (!takenCidrs.some((t) => overlaps(t, candidate))) return formatCidr(candidate);
  }
  throw new Error(`every /24 in ${LAB_SUBNET_POOL} is in use; set spec.network.cidr`);
}

/** Locally administered, deterministic MAC in QEMU's 52:54:00 range. */
export function macFor(lab: string, node: string): string {
  const h = createHash("sha256").update(`mac:${lab}/${node}`).digest();
  return ["52", "54", "00", h[0]!, h[1]!, h[2]!]
    .map((b) => (typeof b === "number" ? b.toString(16).padStart(2, "0") : b))
    .join(":");
}

export interface NodeDraft {
  spec: NodeSpec;
  /** Field path of this node in the file, for messages. */
  path: string;
}

/** The node list the topology describes: explicit `nodes`, or names made from the counts. */
export function nodeDrafts(lab: Lab): NodeDraft[] {
  const s = lab.spec;
  if (s.nodes) return s.nodes.map((spec, i) => ({ spec, path: `spec.nodes.${i}` }));
  const masters = s.masters?.count ?? 3;
  const workers = s.workers?.count ?? 2;
  const drafts: NodeDraft[] = [];
  for (let i = 1; i <= masters; i++) {
    drafts.push({
      spec: { name: `master-${i}`, role: "master", resources: s.masters?.resources },
      path: "spec.masters",
    });
  }
  for (let i = 1; i <= workers; i++) {
    drafts.push({
      spec: { name: `worker-${i}`, role: "worker", resources: s.workers?.resources },
      path: "spec.workers",
    });
  }
  // Masters first, so indexes (and so addresses and pod CIDRs) stay put when workers are added.
  return drafts.sort((a, b) => (a.spec.role === b.spec.role ? 0 : a.spec.role === "master" ? -1 : 1));
}

export interface AddressLayout {
  cidr?: Cidr;
  derived: boolean;
  gateway?: number;
  vip?: number;
  /** Address per draft (same order), undefined when it cannot be placed. */
  addresses: (number | undefined)[];
}

/** Places gateway, VIP and node addresses. Pure; validation reports what does not fit. */
export function layoutAddresses(lab: Lab, drafts: NodeDraft[], taken: string[] = []): AddressLayout {
  const net = lab.spec.network;
  const isBaremetal = lab.spec.provider.type === "baremetal";
  const cidrText = net.cidr ?? (isBaremetal ? undefined : deriveLabCidr(lab.metadata.name, taken));
  const cidr = cidrText ? mustParseCidr(cidrText) : undefined;
  const gateway = net.gateway ? parseIPv4(net.gateway) : cidr ? cidr.base + GATEWAY_OFFSET : undefined;
  const vip = net.vip ? parseIPv4(net.vip) : cidr ? cidr.base + VIP_OFFSET : undefined;
  const used = new Set<number>();
  for (const d of drafts) if (d.spec.address) used.add(parseIPv4(d.spec.address));
  const addresses: (number | undefined)[] = [];
  const next = { master: MASTER_OFFSET, worker: WORKER_OFFSET };
  for (const d of drafts) {
    if (d.spec.address) {
      addresses.push(parseIPv4(d.spec.address));
      continue;
    }
    if (!cidr) {
      addresses.push(undefined);
      continue;
    }
    let candidate = cidr.base + next[d.spec.role];
    while (used.has(candidate) || candidate === vip || candidate === gateway) candidate++;
    next[d.spec.role] = candidate - cidr.base + 1;
    used.add(candidate);
    addresses.push(candidate);
  }
  return { cidr, derived: !net.cidr, gateway, vip, addresses };
}

function resources(lab: Lab, spec: NodeSpec) {
  const base = lab.spec.resources;
  const r = { ...base, ...stripUndefined(spec.resources ?? {}) };
  return {
    cpus: r.cpus,
    memoryMiB: toMiB(parseSize(r.memory) as number),
    diskMiB: toMiB(parseSize(r.disk) as number),
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Builds the plan of a valid topology (see validate.ts for the checks that make it valid). */
export function plan(lab: Lab, opts: PlanOptions = {}): Plan {
  const name = lab.metadata.name;
  const drafts = nodeDrafts(lab);
  const layout = layoutAddresses(lab, drafts, opts.taken);
  const cluster = lab.spec.cluster;
  const podCidr = mustParseCidr(cluster.podCIDR);
  const svcCidr = mustParseCidr(cluster.serviceCIDR);
  const nodes: PlannedNode[] = drafts.map((d, index) => {
    const addr = layout.addresses[index];
    if (addr === undefined) throw new Error(`${d.path}: no address for node ${d.spec.name}`);
    return {
      name: d.spec.name,
      role: d.spec.role,
      index,
      address: formatIPv4(addr),
      mac: macFor(name, d.spec.name),
      ...resources(lab, d.spec),
      podCIDR: formatCidr(subnet(podCidr, cluster.nodeCIDRMaskSize, index)),
      labels: d.spec.labels ?? {},
      ...(d.spec.uri ? { uri: d.spec.uri } : {}),
      ssh: {
        port: d.spec.ssh?.port ?? 22,
        user: d.spec.ssh?.user ?? lab.spec.ssh.user,
        ...((d.spec.ssh?.key ?? lab.spec.ssh.key) ? { key: d.spec.ssh?.key ?? lab.spec.ssh.key } : {}),
        ...(d.spec.ssh?.hostKey ? { hostKey: d.spec.ssh.hostKey } : {}),
        acceptNewHostKey: d.spec.ssh?.acceptNewHostKey ?? false,
      },
    };
  });
  const id = labId(name);
  const masters = nodes.filter((n) => n.role === "master");
  // A single master needs no VIP: unless the topology names one, the API endpoint is the master.
  const vip = masters.length === 1 && !lab.spec.network.vip ? parseIPv4(masters[0]!.address) : layout.vip;
  const cidr = layout.cidr ?? { base: parseIPv4(nodes[0]!.address), prefix: 32 };
  return {
    lab: name,
    id,
    provider: lab.spec.provider,
    image: lab.spec.image,
    network: {
      cidr: formatCidr(cidr),
      prefix: cidr.prefix,
      derived: layout.derived,
      gateway: layout.gateway !== undefined ? formatIPv4(layout.gateway) : "",
      vip: vip !== undefined ? formatIPv4(vip) : "",
      netns: `lab-${name}`,
      hostVeth: `lab-${id}`,
    },
    cluster: {
      podCIDR: cluster.podCIDR,
      serviceCIDR: cluster.serviceCIDR,
      domain: cluster.domain,
      nodeCIDRMaskSize: cluster.nodeCIDRMaskSize,
      podEvictionTimeoutSeconds: cluster.podEvictionTimeoutSeconds,
      apiServerPort: API_SERVER_PORT,
      kubernetesServiceIP: formatIPv4(svcCidr.base + 1),
      dnsServiceIP: formatIPv4(svcCidr.base + 10),
    },
    masters,
    workers: nodes.filter((n) => n.role === "worker"),
    nodes,
  };
}

export { contains };
