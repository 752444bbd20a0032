/**
 * Where a libvirt lab's nodes run (one site per distinct hypervisor URI), and the checks that a
 * bridge-mode lab's subnet fits the network its hypervisors already have. Pure: the provisioner
 * gathers the facts (interfaces, addresses) and these functions decide.
 */
import { createHash } from "node:crypto";
import { contains, mustParseCidr, parseIPv4 } from "../../lib/ipv4.ts";
import { LabError } from "../../topology/errors.ts";
import type { Plan, PlannedNode } from "../../topology/plan.ts";
import { DEFAULT_URI } from "./names.ts";

/** One hypervisor of a lab and the nodes placed on it. */
export interface Site {
  uri: string;
  /**
   * Suffix of the site's network and pool names: "" when the lab has one hypervisor (the names
   * stay `lab-<lab>`), else `.` and a hash of the URI, because two URIs may reach one libvirtd.
   */
  tag: string;
  nodes: PlannedNode[];
}

export function providerUri(plan: Pick<Plan, "provider">): string {
  return plan.provider.type === "libvirt" ? plan.provider.uri : DEFAULT_URI;
}

/** URI parameters that only say how to log in: changing them does not move a hypervisor. */
const LOGIN_PARAMS = new Set([
  "keyfile",
  "known_hosts",
  "known_hosts_verify",
  "command",
  "no_tty",
  "no_verify",
  "sshauth",
]);

/** The tag of a hypervisor in a lab with several: a hash of its URI without the login parameters. */
export function siteTag(uri: string): string {
  const [base, query = ""] = uri.split("?", 2) as [string, string?];
  const kept = new URLSearchParams(query);
  for (const k of [...kept.keys()]) if (LOGIN_PARAMS.has(k)) kept.delete(k);
  kept.sort();
  const id = kept.size ? `${base}?${kept.toString()}` : base;
  return "." + createHash("sha256").update(id).digest("hex").slice(0, 6);
}

/** The lab's hypervisors, in the order their first node appears in the plan. */
export function labSites(plan: Pick<Plan, "provider" | "nodes">): Site[] {
  const fallback = providerUri(plan);
  const byUri = new Map<string, PlannedNode[]>();
  for (const n of plan.nodes) {
    const uri = n.uri ?? fallback;
    byUri.set(uri, [...(byUri.get(uri) ?? []), n]);
  }
  const multi = byUri.size > 1;
  return [...byUri].map(([uri, nodes]) => ({ uri, tag: multi ? siteTag(uri) : "", nodes }));
}

/** Where a site's URI is written in the topology, for messages. */
export function siteWhere(plan: Pick<Plan, "provider">, site: Site): string {
  const nodes = `node${site.nodes.length > 1 ? "s" : ""} ${site.nodes.map((n) => n.name).join(", ")}`;
  if (site.uri !== providerUri(plan)) return `spec.nodes[].uri of ${nodes}`;
  return site.tag ? `spec.provider.uri (${nodes})` : "spec.provider.uri";
}

/** The bridge a lab's nodes join, when the topology names one (bridge mode). */
export function labBridge(plan: Pick<Plan, "provider">): string | undefined {
  return plan.provider.type === "libvirt" ? plan.provider.network?.bridge : undefined;
}

export interface HostAddress {
  dev: string;
  address: string;
  prefix: number;
}

/** IPv4 addresses from `ip -4 -o addr show` (`2: br0    inet 192.168.1.5/24 brd ... scope global br0`). */
export function parseIpAddrs(text: string): HostAddress[] {
  const out: HostAddress[] = [];
  for (const line of text.split("\n")) {
    const m = /^\d+:\s+(\S+?)(?:@\S+)?\s+inet\s+(\d+\.\d+\.\d+\.\d+)\/(\d+)/.exec(line.trim());
    if (m) out.push({ dev: m[1]!, address: m[2]!, prefix: Number(m[3]) });
  }
  return out;
}

/**
 * In bridge mode `lab` reaches the nodes from the machine that hosts them (this one for a local
 * URI, the hypervisor it jumps through for a remote one), so that machine needs an address in
 * the lab's subnet, and none of its addresses may be one the plan gives to a node or the VIP.
 */
export function bridgeAddressProblem(
  plan: Pick<Plan, "network" | "nodes">,
  host: string,
  bridge: string,
  addrs: HostAddress[],
): LabError | undefined {
  const cidr = mustParseCidr(plan.network.cidr);
  const inLab = addrs.filter((a) => contains(cidr, parseIPv4(a.address)));
  if (inLab.length === 0) {
    const onBridge = addrs.filter((a) => a.dev === bridge).map((a) => `${a.address}/${a.prefix}`);
    const have = addrs.filter((a) => a.dev !== "lo").map((a) => `${a.address}/${a.prefix} on ${a.dev}`);
    return new LabError({
      code: "LIBVIRT_BRIDGE_SUBNET",
      what: `${host} has no address in the lab's subnet ${plan.network.cidr} (it has ${have.join(", ") || "none"}), so lab cannot reach the nodes on ${bridge} from there`,
      where: "spec.network.cidr",
      fix: onBridge.length
        ? `set spec.network.cidr to ${bridge}'s subnet (${bridge} holds ${onBridge.join(", ")}) and pick node addresses that are free there`
        : `give ${bridge} on ${host} an address in ${plan.network.cidr} (the host's LAN address belongs on the bridge), or set spec.network.cidr to the subnet it is on`,
    });
  }
  const taken = new Map<string, string>(plan.nodes.map((n) => [n.address, `node ${n.name}`]));
  // With one master the VIP is the master's own address: that node is named then.
  if (plan.network.vip && !taken.has(plan.network.vip)) taken.set(plan.network.vip, "the API VIP");
  for (const a of inLab) {
    const user = taken.get(a.address);
    if (user) {
      return new LabError({
        code: "LIBVIRT_BRIDGE_ADDRESS_TAKEN",
        what: `${a.address}, planned for ${user}, is ${host}'s own address (on ${a.dev})`,
        where: "spec.nodes[].address / spec.network.vip",
        fix: `give ${user} another address in ${plan.network.cidr} that nothing on ${bridge}'s network uses`,
      });
    }
  }
  return undefined;
}
