/**
 * The lab network on the host: one network namespace per lab holding a bridge and one tap per
 * VM, and a veth pair whose host end carries the gateway address, so the user's own ssh, kubectl
 * and curl reach the VMs directly. The host firewall is not touched.
 */
import { existsSync } from "node:fs";
import { execa } from "execa";
import { LabError } from "../../topology/errors.ts";
import {
  BRIDGE,
  hostVethName,
  linkAlias,
  netnsName,
  overlappingRoutes,
  tapName,
  UPLINK,
  type HostRoute,
} from "./names.ts";

export interface LabNetworkSpec {
  lab: string;
  cidr: string;
  prefix: number;
  gateway: string;
}

async function ip(args: string[]): Promise<string> {
  try {
    return (await execa("ip", args, { stdin: "ignore" })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; code?: string };
    throw new LabError({
      code: e.code === "ENOENT" ? "HOST_TOOL_MISSING" : "NETWORK_FAILED",
      what: `ip ${args.join(" ")} failed: ${(e.stderr ?? String(err)).trim()}`,
      fix:
        e.code === "ENOENT"
          ? "install iproute2 (`lab doctor --fix`)"
          : "lab networking needs root (CAP_NET_ADMIN)",
      source: "host",
    });
  }
}

export async function hostRoutes(): Promise<HostRoute[]> {
  const out = await ip(["-j", "-4", "route", "show", "table", "main"]);
  return (JSON.parse(out || "[]") as { dst: string; dev?: string }[]).map((r) => ({
    dst: r.dst,
    dev: r.dev,
  }));
}

export function netnsExists(lab: string): boolean {
  return existsSync(`/run/netns/${netnsName(lab)}`);
}

async function linkExists(name: string, netns?: string): Promise<boolean> {
  try {
    await execa("ip", [...(netns ? ["-n", netns] : []), "link", "show", "dev", name], { stdin: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Creates (or completes) the lab's namespace, bridge and veth; refuses a subnet already routed. */
export async function ensureLabNetwork(spec: LabNetworkSpec): Promise<void> {
  const ns = netnsName(spec.lab);
  const veth = hostVethName(spec.lab);
  const clash = overlappingRoutes(spec.cidr, await hostRoutes(), veth);
  if (clash.length > 0) {
    throw new LabError({
      code: "NETWORK_OVERLAP",
      what: `the lab subnet ${spec.cidr} overlaps host route${clash.length > 1 ? "s" : ""} ${clash
        .map((r) => `${r.dst}${r.dev ? ` (dev ${r.dev})` : ""}`)
        .join(", ")}`,
      where: "spec.network.cidr",
      fix: "choose another spec.network.cidr, or omit it to let lab pick a free subnet",
    });
  }
  if (!netnsExists(spec.lab)) await ip(["netns", "add", ns]);
  await ip(["-n", ns, "link", "set", "lo", "up"]);
  if (!(await linkExists(BRIDGE, ns))) await ip(["-n", ns, "link", "add", BRIDGE, "type", "bridge"]);
  await ip(["-n", ns, "link", "set", BRIDGE, "up"]);
  if (!(await linkExists(veth))) {
    await ip(["link", "add", veth, "type", "veth", "peer", "name", UPLINK, "netns", ns]);
  }
  await ip(["link", "set", "dev", veth, "alias", linkAlias(spec.lab)]);
  await ip(["-n", ns, "link", "set", UPLINK, "master", BRIDGE, "up"]);
  const addrs = await ip(["-j", "-4", "addr", "show", "dev", veth]);
  const has = (JSON.parse(addrs || "[]") as { addr_info?: { local: string }[] }[]).some((l) =>
    (l.addr_info ?? []).some((a) => a.local === spec.gateway),
  );
  if (!has) await ip(["addr", "add", `${spec.gateway}/${spec.prefix}`, "dev", veth]);
  await ip(["link", "set", veth, "up"]);
}

/** Creates the VM's tap in the lab namespace, on the bridge (idempotent). */
export async function ensureTap(lab: string, index: number): Promise<string> {
  const ns = netnsName(lab);
  const tap = tapName(index);
  if (!(await linkExists(tap, ns))) await ip(["-n", ns, "tuntap", "add", "dev", tap, "mode", "tap"]);
  await ip(["-n", ns, "link", "set", tap, "master", BRIDGE, "up"]);
  return tap;
}

/** Host links that carry the lab's alias (found without state). */
export async function labHostLinks(lab: string): Promise<string[]> {
  const out = await ip(["-j", "link", "show"]);
  return (JSON.parse(out || "[]") as { ifname: string; ifalias?: string }[])
    .filter((l) => l.ifalias === linkAlias(lab) || l.ifname === hostVethName(lab))
    .map((l) => l.ifname);
}

/** Removes the namespace (and with it bridge, taps and the veth pair) and any host link left. */
export async function destroyLabNetwork(lab: string): Promise<void> {
  if (netnsExists(lab)) await ip(["netns", "del", netnsName(lab)]);
  for (const link of await labHostLinks(lab)) {
    try {
      await ip(["link", "del", link]);
    } catch {
      // deleting the namespace may have taken the pair with it meanwhile
    }
  }
}
