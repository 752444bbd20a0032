/**
 * Names of a lab's network resources (pure). Host-side resources carry the lab's name, so
 * `lab down` finds them without state: the namespace by name, the host veth by its alias.
 * Linux interface names are at most 15 characters, so the host veth uses the lab's short id.
 */
import { labId } from "../../topology/plan.ts";
import { mustParseCidr, overlaps } from "../../lib/ipv4.ts";

export const BRIDGE = "br0";
/** The namespace end of the veth pair, enslaved to the bridge. */
export const UPLINK = "uplink0";

export function netnsName(lab: string): string {
  return `lab-${lab}`;
}

export function hostVethName(lab: string): string {
  return `lab-${labId(lab)}`;
}

/** ifalias set on every host-side link of the lab. */
export function linkAlias(lab: string): string {
  return `lab:${lab}`;
}

/** The tap of the VM at `index` inside the lab's namespace (names are per namespace). */
export function tapName(index: number): string {
  return `tap${index}`;
}

export interface HostRoute {
  dst: string;
  dev?: string;
}

/**
 * Host routes that overlap the lab's subnet, ignoring the lab's own veth (its connected route
 * exists after a first `up`) and the default route.
 */
export function overlappingRoutes(cidr: string, routes: HostRoute[], ownDev: string): HostRoute[] {
  const mine = mustParseCidr(cidr);
  return routes.filter((r) => {
    if (r.dst === "default" || r.dev === ownDev) return false;
    const dst = r.dst.includes("/") ? r.dst : `${r.dst}/32`;
    const parsed = parseAnyCidr(dst);
    return parsed !== undefined && overlaps(parsed, mine);
  });
}

/** Route destinations for the planner's `taken` list (skips default and the lab's own link). */
export function takenSubnets(routes: HostRoute[], ownDev: string): string[] {
  return routes
    .filter((r) => r.dst !== "default" && r.dev !== ownDev)
    .map((r) => (r.dst.includes("/") ? r.dst : `${r.dst}/32`))
    .filter((d) => parseAnyCidr(d) !== undefined);
}

// mustParseCidr refuses prefixes outside /8–/30 (a topology rule); host routes may be anything.
function parseAnyCidr(s: string): { base: number; prefix: number } | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(s);
  if (!m) return undefined;
  const prefix = Number(m[5]);
  const addr = m.slice(1, 5).reduce((a, p) => a * 256 + Number(p), 0);
  const size = 2 ** (32 - prefix);
  return { base: addr - (addr % size), prefix };
}
