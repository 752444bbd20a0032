/**
 * Addresses of hollow nodes, pure: each node's pod IPs come from its spec.podCIDR (set by the
 * node IPAM controller), or, where no IPAM runs, from a CIDR derived from the node's name; its
 * InternalIP is a loopback address, so anything that dials a hollow node (logs, exec) stays on
 * this machine and gets "connection refused".
 */
import { cidrRange, formatIPv4, ipv4ToNumber } from "../../lib/ipv4.ts";

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** A /24 in 172.16.0.0/12 chosen by the node's name (4,096 of them; collisions are harmless). */
export function fallbackPodCidr(nodeName: string): string {
  const n = fnv1a(nodeName) % 4096;
  return `172.${16 + (n >> 8)}.${n & 255}.0/24`;
}

/** 127.X.Y.Z chosen by the node's name, never 127.0.0.0/16 (where the API server may listen). */
export function hollowNodeIP(nodeName: string): string {
  const h = fnv1a(nodeName);
  return `127.${1 + (h % 254)}.${(h >>> 8) & 255}.${1 + ((h >>> 16) % 254)}`;
}

/**
 * The pod IPs of one node: the lowest free host address of its CIDR (skipping the network
 * address, .1 as the gateway, and broadcast), held per pod uid until released.
 */
export class PodIpPool {
  private readonly byUid = new Map<string, number>();
  private readonly used = new Set<number>();
  private readonly base: number;
  private readonly size: number;

  constructor(readonly cidr: string) {
    const c = cidrRange(cidr) ?? cidrRange(fallbackPodCidr(cidr))!;
    this.base = c.base;
    this.size = c.size;
  }

  /** The pod's IP: the one it has, `wish` when free and inside the CIDR, else the lowest free one. */
  allocate(uid: string, wish?: string): string | undefined {
    const held = this.byUid.get(uid);
    if (held !== undefined) return formatIPv4(this.base + held);
    let off: number | undefined;
    const wished = wish ? ipv4ToNumber(wish) : undefined;
    if (wished !== undefined) {
      const w = wished - this.base;
      if (w >= 2 && w < this.size - 1 && !this.used.has(w)) off = w;
    }
    for (let o = 2; off === undefined && o < this.size - 1; o++) if (!this.used.has(o)) off = o;
    if (off === undefined) return undefined;
    this.used.add(off);
    this.byUid.set(uid, off);
    return formatIPv4(this.base + off);
  }

  release(uid: string): void {
    const off = this.byUid.get(uid);
    if (off === undefined) return;
    this.used.delete(off);
    this.byUid.delete(uid);
  }

  get allocated(): number {
    return this.byUid.size;
  }
}
