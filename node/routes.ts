/**
 * Routes to the other nodes' pod CIDRs via their node addresses, kept in sync with the Node
 * objects. Our routes carry their own protocol number, so the sync removes only what it added.
 */
import type { V1Node } from "@kubernetes/client-node";
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** rtnetlink protocol id marking lab-agent's routes (unassigned in /etc/iproute2/rt_protos). */
export const ROUTE_PROTO = "177";

export interface PodRoute {
  cidr: string;
  via: string;
}

/** One route per other node that has a pod CIDR and an InternalIP; sorted for stable diffs. */
export function desiredRoutes(nodes: V1Node[], selfName: string): PodRoute[] {
  const routes: PodRoute[] = [];
  for (const n of nodes) {
    if (n.metadata?.name === selfName) continue;
    const cidr = n.spec?.podCIDR;
    const via = n.status?.addresses?.find((a) => a.type === "InternalIP")?.address;
    if (cidr && via) routes.push({ cidr, via });
  }
  return routes.sort((a, b) => a.cidr.localeCompare(b.cidr));
}

/** What to add (or change) and what to delete to go from `current` to `desired`. */
export function diffRoutes(
  current: PodRoute[],
  desired: PodRoute[],
): { replace: PodRoute[]; remove: PodRoute[] } {
  const cur = new Map(current.map((r) => [r.cidr, r.via]));
  const want = new Set(desired.map((r) => r.cidr));
  return {
    replace: desired.filter((r) => cur.get(r.cidr) !== r.via),
    remove: current.filter((r) => !want.has(r.cidr)),
  };
}

/** Applies the routes; `prefix` runs `ip` elsewhere (nsenter into a test netns). */
export async function syncRoutes(desired: PodRoute[], prefix: string[] = []): Promise<void> {
  const ip = async (...args: string[]): Promise<string> => {
    const [cmd, ...rest] = [...prefix, "ip", ...args];
    return (await run(cmd!, rest)).stdout;
  };
  const shown = JSON.parse((await ip("-j", "-4", "route", "show", "proto", ROUTE_PROTO)) || "[]") as {
    dst: string;
    gateway?: string;
  }[];
  const current = shown.filter((r) => r.gateway).map((r) => ({ cidr: r.dst, via: r.gateway! }));
  const { replace, remove } = diffRoutes(current, desired);
  for (const r of remove) await ip("route", "del", r.cidr, "proto", ROUTE_PROTO);
  for (const r of replace) await ip("route", "replace", r.cidr, "via", r.via, "proto", ROUTE_PROTO);
}
