/** IPv4 arithmetic (labs and clusters are IPv4-only for now). Pure: imports nothing from the project. */

export interface Cidr {
  /** Network address as an unsigned 32-bit integer. */
  base: number;
  prefix: number;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function isIPv4(s: string): boolean {
  return IPV4.test(s);
}

export function parseIPv4(s: string): number {
  if (!isIPv4(s)) throw new Error(`not an IPv4 address: ${s}`);
  return s.split(".").reduce((acc, part) => acc * 256 + Number(part), 0);
}

export function formatIPv4(n: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join(".");
}

/** A dotted quad (leading zeros allowed) as a number, or undefined when it is not one. */
export function ipv4ToNumber(s: string): number | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (!m) return undefined;
  const octets = m.slice(1, 5).map(Number);
  if (octets.some((o) => o > 255)) return undefined;
  return octets.reduce((a, o) => a * 256 + o, 0);
}

/**
 * `a.b.c.d/p` with a prefix from /8 to /30 as its first address (host bits cleared) and size, or
 * undefined when it is not one (the lenient form the control plane and agents accept).
 */
export function cidrRange(cidr: string): { base: number; size: number } | undefined {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(cidr);
  const ip = m ? ipv4ToNumber(m[1]!) : undefined;
  const bits = Number(m?.[2]);
  if (ip === undefined || bits < 8 || bits > 30) return undefined;
  const size = 2 ** (32 - bits);
  return { base: ip - (ip % size), size };
}

/** Parses `a.b.c.d/p`; returns an error message instead of throwing, for validation. */
export function parseCidr(s: string): Cidr | string {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(s);
  if (!m || !isIPv4(m[1]!)) return `must be an IPv4 CIDR like 10.200.0.0/24 (got "${s}")`;
  const prefix = Number(m[2]);
  if (prefix < 8 || prefix > 30) return `prefix length must be between /8 and /30 (got /${prefix})`;
  const addr = parseIPv4(m[1]!);
  const size = 2 ** (32 - prefix);
  if (addr % size !== 0) {
    return `host bits are set in ${s}: the network address is ${formatIPv4(addr - (addr % size))}/${prefix}`;
  }
  return { base: addr, prefix };
}

export function mustParseCidr(s: string): Cidr {
  const c = parseCidr(s);
  if (typeof c === "string") throw new Error(c);
  return c;
}

export function cidrSize(c: Cidr): number {
  return 2 ** (32 - c.prefix);
}

export function formatCidr(c: Cidr): string {
  return `${formatIPv4(c.base)}/${c.prefix}`;
}

export function contains(c: Cidr, addr: number): boolean {
  return addr >= c.base && addr < c.base + cidrSize(c);
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return a.base < b.base + cidrSize(b) && b.base < a.base + cidrSize(a);
}

/** The i-th subnet of size /prefix inside `parent` (i from 0). */
export function subnet(parent: Cidr, prefix: number, i: number): Cidr {
  return { base: parent.base + i * 2 ** (32 - prefix), prefix };
}
