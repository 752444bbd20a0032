/** Node IPAM, pure: one pod CIDR per node carved from the cluster CIDR. */
import type { V1Node } from "@kubernetes/client-node";
import { formatIPv4, ipv4ToNumber } from "../../lib/ipv4.ts";

export interface CidrPool {
  base: number;
  clusterPrefix: number;
  nodePrefix: number;
  size: number;
}

export function cidrPool(clusterCidr: string, nodeMaskSize = 24): CidrPool {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(clusterCidr);
  const ip = m ? ipv4ToNumber(m[1]!) : undefined;
  if (!m || ip === undefined)
    throw new Error(`cluster CIDR "${clusterCidr}" is not an IPv4 CIDR like 10.244.0.0/16`);
  const prefix = Number(m[2]);
  if (nodeMaskSize < prefix || nodeMaskSize > 30)
    throw new Error(`node mask /${nodeMaskSize} must be between the cluster prefix /${prefix} and /30`);
  const base = ip - (ip % 2 ** (32 - prefix));
  return { base, clusterPrefix: prefix, nodePrefix: nodeMaskSize, size: 2 ** (nodeMaskSize - prefix) };
}

export function cidrAt(pool: CidrPool, index: number): string {
  return `${formatIPv4(pool.base + index * 2 ** (32 - pool.nodePrefix))}/${pool.nodePrefix}`;
}

export function indexOf(pool: CidrPool, cidr: string): number | undefined {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(cidr);
  const ip = m ? ipv4ToNumber(m[1]!) : undefined;
  if (!m || ip === undefined || Number(m[2]) !== pool.nodePrefix) return undefined;
  const off = ip - pool.base;
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
