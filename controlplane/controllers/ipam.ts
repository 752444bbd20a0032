/** Node IPAM, pure: one pod CIDR per node carved from the cluster CIDR. */
import type { V1Node } from "@kubernetes/client-node";

function ipToInt(ip: string): number {
  return ip.split(".").reduce((n, o) => n * 256 + Number(o), 0);
}
function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
}

export interface CidrPool {
  base: number;
  clusterPrefix: number;
  nodePrefix: number;
  size: number;
}

export function cidrPool(clusterCidr: string, nodeMaskSize = 24): CidrPool {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(clusterCidr);
  if (!m) throw new Error(`cluster CIDR "${clusterCidr}" is not an IPv4 CIDR like 10.244.0.0/16`);
  const prefix = Number(m[2]);
  if (nodeMaskSize < prefix || nodeMaskSize > 30)
    throw new Error(`node mask /${nodeMaskSize} must be between the cluster prefix /${prefix} and /30`);
  const base = ipToInt(m[1]!) - (ipToInt(m[1]!) % 2 ** (32 - prefix));
  return { base, clusterPrefix: prefix, nodePrefix: nodeMaskSize, size: 2 ** (nodeMaskSize - prefix) };
}

export function cidrAt(pool: CidrPool, index: number): string {
  return `${intToIp(pool.base + index * 2 ** (32 - pool.nodePrefix))}/${pool.nodePrefix}`;
}

export function indexOf(pool: CidrPool, cidr: string): number | undefined {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(cidr);
  if (!m || Number(m[2]) !== pool.nodePrefix) return undefined;
  const off = ipToInt(m[1]!) - pool.base;
  const step = 2 ** (32 - pool.nodePrefix);
  if (off < 0 || off % step !== 0 || off / step >= pool.size) return undefined;
  return off / step;
}

/**
 * Assignments for nodes without a pod CIDR: existing ones are kept (index-stable), new nodes get
 * the lowest free index, in name order so the result is deterministic. Nodes that cannot get one
 * (pool exhausted) are listed apart.
 */
export function allocatePodCidrs(
  pool: CidrPool,
  nodes: V1Node[],
): { assign: Record<string, string>; exhausted: string[] } {
  const used = new Set<number>();
  for (const n of nodes) {
    const i = n.spec?.podCIDR ? indexOf(pool, n.spec.podCIDR) : undefined;
    if (i !== undefined) used.add(i);
  }
  const assign: Record<string, string> = {};
  const exhausted: string[] = [];
  let next = 0;
  const pending = nodes
    .filter((n) => !n.spec?.podCIDR)
    .map((n) => n.metadata?.name ?? "")
    .sort();
  for (const name of pending) {
    while (used.has(next)) next++;
    if (next >= pool.size) {
      exhausted.push(name);
      continue;
    }
    used.add(next);
    assign[name] = cidrAt(pool, next);
  }
  return { assign, exhausted };
}
