/** Opening the lab's hypervisors: connection, SSH jump, KVM facts and (bridge mode) the bridge, checked before anything is created. */
import { execa } from "execa";
import { LabError } from "../../topology/errors.ts";
import { step } from "../../topology/progress.ts";
import type { SshJump } from "../../ssh/endpoint.ts";
import type { ProvisionContext } from "../provisioner.ts";
import { connectJump, execOnJump } from "../../ssh/jump.ts";
import { localKvmFacts, type KvmFacts } from "./accel.ts";
import { hypervisorJump, parseRemoteUri } from "./remote.ts";
import { type LibvirtConnection } from "./connection.ts";
import { isLocalUri } from "./names.ts";
import {
  bridgeAddressProblem,
  labBridge,
  labSites,
  parseIpAddrs,
  siteWhere,
  type HostAddress,
  type Site,
} from "./placement.ts";

type Connect = (uri: string) => Promise<LibvirtConnection>;

/** The pinned SSH jump to a remote hypervisor; only SSH transports can provide one. */
async function hypervisorJumpFor(ctx: ProvisionContext, site: Site): Promise<SshJump> {
  const remote = parseRemoteUri(site.uri);
  if (!remote) {
    throw new LabError({
      code: "LIBVIRT_REMOTE_UNSUPPORTED",
      what: `remote libvirt URI ${site.uri} is not an SSH transport: lab reaches a remote hypervisor's lab network only through SSH`,
      where: siteWhere(ctx.plan, site),
      fix: "use qemu+ssh://user@host/system (or run lab on the hypervisor with qemu:///system)",
    });
  }
  const p = ctx.plan.provider;
  // The topology's pinned fingerprint belongs to spec.provider.uri's hypervisor only.
  const pinned = p.type === "libvirt" && site.uri === p.uri ? p.hostKey : undefined;
  try {
    return await hypervisorJump(remote, pinned);
  } catch (err) {
    throw err instanceof LabError ? relocate(err, siteWhere(ctx.plan, site)) : err;
  }
}

/** The same error, located at the hypervisor's field (which node, which URI). */
export function relocate(err: LabError, where: string, uri?: string): LabError {
  return new LabError({
    code: err.code,
    what: uri && !err.what.includes(uri) ? `${err.what} (libvirt at ${uri})` : err.what,
    where,
    ...(err.fix ? { fix: err.fix } : {}),
    source: err.source,
    cause: err,
  });
}

export interface HypervisorFacts extends KvmFacts {
  /** The key the hypervisor presented on the jump (remote hypervisors). */
  hostPublicKey?: string;
  /** Its IPv4 addresses (bridge mode: does it reach the lab's subnet?). */
  addrs: HostAddress[];
}

/** KVM facts and addresses of a remote hypervisor, asked over the pinned SSH jump. */
async function remoteFacts(jump: SshJump): Promise<HypervisorFacts> {
  const conn = await connectJump(jump);
  try {
    const r = await execOnJump(
      conn,
      "test -r /dev/kvm -a -w /dev/kvm && echo kvm-device; grep -qE '^flags\\s*:.*\\b(vmx|svm)\\b' /proc/cpuinfo && echo cpu-virt; ip -4 -o addr show 2>/dev/null; true",
    );
    return {
      kvmDevice: r.stdout.includes("kvm-device"),
      cpuVirt: r.stdout.includes("cpu-virt"),
      hostPublicKey: conn.hostPublicKey,
      addrs: parseIpAddrs(r.stdout),
    };
  } finally {
    conn.close();
  }
}

/**
 * This machine's IPv4 addresses, from `ip` as on a remote hypervisor: Node's networkInterfaces()
 * leaves out interfaces without carrier, such as a bridge whose ports are all gone.
 */
async function localAddrs(): Promise<HostAddress[]> {
  const r = await execa("ip", ["-4", "-o", "addr", "show"], { reject: false });
  return parseIpAddrs(r.stdout);
}

/** A hypervisor ready for the lab: connected, its jump checked, its bridge (bridge mode) found. */
export interface OpenSite extends Site {
  conn: LibvirtConnection;
  jump?: SshJump;
  facts: HypervisorFacts;
}

/**
 * Connects to one hypervisor and checks everything that can be checked before anything is
 * created: the jump's pinned key and login, and in bridge mode the bridge and the subnet.
 */
async function openSite(connect: Connect, ctx: ProvisionContext, site: Site): Promise<OpenSite> {
  const { plan, reporter } = ctx;
  const where = siteWhere(plan, site);
  const multi = site.tag !== "";
  // A remote hypervisor's lab network is reachable only from that host: an SSH jump through it,
  // pinned before anything is created.
  const jump = isLocalUri(site.uri) ? undefined : await hypervisorJumpFor(ctx, site);
  const conn = await step(
    reporter,
    "libvirt.connect",
    () =>
      connect(site.uri).catch((err: unknown) => {
        throw err instanceof LabError && multi ? relocate(err, where, site.uri) : err;
      }),
    { message: site.uri },
  );
  try {
    const facts: HypervisorFacts = jump
      ? await step(
          reporter,
          "libvirt.hypervisor",
          () =>
            remoteFacts(jump).catch((err: unknown) => {
              throw err instanceof LabError ? relocate(err, where, site.uri) : err;
            }),
          { message: `SSH to ${jump.user}@${jump.host}:${jump.port} (the jump to the lab network)` },
        )
      : { ...(await localKvmFacts()), addrs: await localAddrs() };
    const bridge = labBridge(plan);
    if (bridge) {
      await step(
        reporter,
        "libvirt.bridge",
        async () => {
          const host = jump ? `the hypervisor ${jump.host}` : "this machine";
          const type = await conn.interfaceType(bridge);
          if (type !== "bridge") {
            throw new LabError({
              code: "LIBVIRT_BRIDGE_MISSING",
              what:
                type === undefined
                  ? `${host} (libvirt at ${site.uri}) has no interface ${bridge}`
                  : `${bridge} on ${host} (libvirt at ${site.uri}) is a ${type} interface, not a bridge`,
              where: `spec.provider.network.bridge (${where})`,
              fix: `create the bridge on that host (e.g. \`ip link add ${bridge} type bridge\`, with the uplink and the host's LAN address moved onto it, in its network configuration), or name the bridge it has (\`virsh -c '${site.uri}' iface-list --all\`)`,
              source: "host",
            });
          }
          const problem = bridgeAddressProblem(plan, host, bridge, facts.addrs);
          if (problem) throw problem;
        },
        { message: `${bridge} on ${site.uri}` },
      );
    }
    return { ...site, conn, ...(jump ? { jump } : {}), facts };
  } catch (err) {
    await conn.close();
    throw err;
  }
}

/** Opens every hypervisor of the lab, or none: one that fails closes the others untouched. */
export async function openSites(connect: Connect, ctx: ProvisionContext): Promise<OpenSite[]> {
  const results = await Promise.allSettled(labSites(ctx.plan).map((s) => openSite(connect, ctx, s)));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    for (const r of results) if (r.status === "fulfilled") await r.value.conn.close();
    throw failed.reason;
  }
  return results.map((r) => (r as PromiseFulfilledResult<OpenSite>).value);
}
