/**
 * The libvirt provisioner: a lab as ordinary libvirt domains (visible to virsh and virt-manager),
 * on one hypervisor or spread over several (a URI per node). Each hypervisor gets the lab's own
 * storage pool and network: an isolated per-lab network by default, or a network onto a host
 * bridge the user names (which is what joins several hypervisors). Everything it creates carries
 * the lab's name (domains also a metadata marker), so `lab down` finds it without the lab's state.
 * It only produces machines that accept SSH; the bootstrap after that is the shared one.
 */
import { existsSync } from "node:fs";
import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { PlannedNode } from "../../topology/plan.ts";
import { LabError } from "../../topology/errors.ts";
import { step } from "../../topology/progress.ts";
import { type DomainType } from "../../templates/libvirt-domain.ts";
import { ensureLabSshKey } from "../keys.ts";
import {
  MACHINE_READY_STEP,
  type Machine,
  type MachineStatus,
  type ProvisionContext,
  type Provisioner,
  type ShutdownResult,
} from "../provisioner.ts";
import { sleep } from "../../lib/sleep.ts";
import { knownHostsName } from "./remote.ts";
import { openLibvirt, type LibvirtConnection } from "./connection.ts";
import { DEFAULT_URI, isLabObjectName, isLocalUri, poolName, POOL_PARENT, volumes } from "./names.ts";
import { labSites, providerUri } from "./placement.ts";

/** The guest image a lab boots: a base disk, and for the built-in image its kernel and initrd. */
export interface GuestImage {
  /** Identifies the content (the image cache key): a changed key means a new upload. */
  key: string;
  disk: string;
  format: "qcow2" | "raw";
  /** Direct kernel boot; a user's cloud image without it boots through firmware. */
  kernel?: { path: string; initrd: string; cmdline: string };
}

/**
 * What the libvirt provisioner shares with the qemu one: the image, the cloud-init seed and the
 * SSH readiness check. Passed in so this folder holds only what is libvirt's own.
 */
export interface LibvirtDeps {
  image(ctx: ProvisionContext): Promise<GuestImage>;
  /** Writes the node's NoCloud seed (a local raw image with label cidata); returns its path. */
  seed(ctx: ProvisionContext, node: PlannedNode): Promise<string>;
  /**
   * Resolves once the machine accepts SSH with its pinned host key. `consoleLog` is the serial
   * console's path on the machine's hypervisor (for the hint when it does not come up).
   */
  waitForSsh(ctx: ProvisionContext, machine: Machine, consoleLog: string): Promise<void>;
  /** Overrides the domain type decision (tests); default: kvm only where usable. */
  domainType?: DomainType;
  /** Opens the connection (tests may wrap it); default: openLibvirt. */
  connect?(uri: string): Promise<LibvirtConnection>;
}

import { createOnSite } from "./create-site.ts";
import { openSites } from "./open-site.ts";
import { labDomains, readSiteRecords, STATE_FILE, writeSiteRecord } from "./site-state.ts";

export { labDomains } from "./site-state.ts";

export class LibvirtProvisioner implements Provisioner {
  readonly name = "libvirt" as const;

  constructor(private readonly deps: LibvirtDeps) {}

  private connect(uri: string): Promise<LibvirtConnection> {
    return (this.deps.connect ?? openLibvirt)(uri);
  }

  async create(ctx: ProvisionContext): Promise<Machine[]> {
    const { plan, state, reporter } = ctx;
    await state.ensure();
    const sites = await openSites((uri) => this.connect(uri), ctx);
    try {
      // Recorded once every hypervisor answered: from here on each may hold something of this lab's.
      for (const s of sites) {
        const prev = (await readSiteRecords(state)).find((r) => r.uri === s.uri);
        await writeSiteRecord(state, { ...prev, uri: s.uri, tag: s.tag });
      }
      const sshKey = await ensureLabSshKey(state);
      const machines: { machine: Machine; consoleLog: string }[] = [];
      for (const site of sites)
        machines.push(...(await createOnSite(this.deps, ctx, site, sshKey.privateKeyPath)));

      // `lab ssh` and the bootstrap pin the host keys through this file (the hypervisors' too:
      // `lab ssh` jumps through them with OpenSSH).
      const hypervisorLines = sites.flatMap((s) =>
        s.jump && s.facts.hostPublicKey
          ? [`${knownHostsName(s.jump.host, s.jump.port)} ${s.facts.hostPublicKey}`]
          : [],
      );
      await state.writeSecret(
        "ssh/known_hosts",
        [
          ...machines.map(
            ({ machine: m }) => `${m.ssh.host} ${m.ssh.hostKey.split(/\s+/).slice(0, 2).join(" ")}`,
          ),
          ...new Set(hypervisorLines),
        ].join("\n") + "\n",
      );
      // All domains boot at once; wait for them together.
      await Promise.all(
        machines.map(({ machine: m, consoleLog }) =>
          step(reporter, MACHINE_READY_STEP, () => this.deps.waitForSsh(ctx, m, consoleLog), {
            node: m.name,
            message: `waiting for SSH on ${m.address} with the pinned host key${m.ssh.jump ? ` (through ${m.ssh.jump.host})` : ""}`,
          }),
        ),
      );
      // Plan order, whichever hypervisor each node is on.
      return plan.nodes.map((n) => machines.find((m) => m.machine.name === n.name)!.machine);
    } finally {
      for (const s of sites) await s.conn.close();
    }
  }

  async status(ctx: ProvisionContext): Promise<MachineStatus[]> {
    const sites = labSites(ctx.plan);
    const out: MachineStatus[] = [];
    const seen = new Set<string>();
    for (const site of sites) {
      let conn: LibvirtConnection;
      try {
        conn = await this.connect(site.uri);
      } catch (err) {
        // One unreachable hypervisor among several: its nodes are unknown, the others still shown.
        if (sites.length === 1 || !(err instanceof LabError)) throw err;
        for (const n of site.nodes)
          out.push({
            name: n.name,
            state: "unknown",
            detail: `libvirt at ${site.uri} unreachable: ${err.what}`,
          });
        continue;
      }
      try {
        const doms = await labDomains(conn, ctx.plan.lab, site.tag);
        const names = new Set([...site.nodes.map((n) => n.name), ...doms.keys()]);
        for (const name of names) {
          if (seen.has(name)) continue;
          seen.add(name);
          const d = doms.get(name);
          if (!d) {
            out.push({ name, state: "missing" });
            continue;
          }
          const planned = site.nodes.some((n) => n.name === name);
          const on = site.tag ? ` at ${site.uri}` : "";
          out.push({
            name,
            state: d.state === "running" ? "running" : d.state === "stopped" ? "stopped" : "unknown",
            detail: planned
              ? `libvirt domain ${d.name}${on} (${d.state})`
              : `libvirt domain ${d.name}${on}, not in the plan`,
          });
        }
      } finally {
        await conn.close();
      }
    }
    // Plan order first, then what is not in the plan.
    const order = (name: string) => {
      const i = ctx.plan.nodes.findIndex((n) => n.name === name);
      return i < 0 ? Number.MAX_SAFE_INTEGER : i;
    };
    return out.sort((a, b) => order(a.name) - order(b.name));
  }

  async destroy(ctx: Parameters<Provisioner["destroy"]>[0]): Promise<void> {
    const lab = ctx.labName;
    const recorded = await readSiteRecords(ctx.state);
    // Every hypervisor the plan names or an earlier `up` connected to; without either, the default.
    const uris = [
      ...new Set([...(ctx.plan ? labSites(ctx.plan).map((s) => s.uri) : []), ...recorded.map((r) => r.uri)]),
    ];
    if (uris.length === 0) uris.push(ctx.plan ? providerUri(ctx.plan) : DEFAULT_URI);
    const failures: LabError[] = [];
    for (const uri of uris) {
      let conn: LibvirtConnection;
      try {
        conn = await this.connect(uri);
      } catch (err) {
        // Nothing of ours can exist on a hypervisor `up` never connected to (it is recorded right
        // after connecting), e.g. libvirtd was never installed, or `lab down` asks every
        // provisioner about a lab of unknown kind. Otherwise removal cannot be confirmed: an error,
        // after the other hypervisors are cleaned.
        const used =
          recorded.some((r) => r.uri === uri) ||
          (existsSync(ctx.state.path(STATE_FILE)) && recorded.length === 0);
        const noLibvirt =
          err instanceof LabError &&
          ["LIBVIRT_UNREACHABLE", "LIBVIRT_BINDING_MISSING", "HOST_TOOL_MISSING"].includes(err.code);
        if (noLibvirt && !used) {
          if (ctx.plan?.provider.type === "libvirt")
            ctx.reporter.notice(`libvirt at ${uri} is unreachable; lab ${lab} never created anything there`);
          continue;
        }
        if (!(err instanceof LabError)) throw err;
        failures.push(err);
        continue;
      }
      try {
        await this.destroyOn(ctx, conn, uri);
      } finally {
        await conn.close();
      }
    }
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1) {
      throw new LabError({
        code: "LIBVIRT_UNREACHABLE",
        what: `lab ${lab} could not be removed from ${failures.length} hypervisors:\n${failures.map((f) => "  " + f.what).join("\n")}`,
        fix: failures[0]!.fix ?? "start libvirtd there, then run `lab down` again",
        source: "host",
      });
    }
  }

  /** Removes everything of the lab one hypervisor holds (all its sites' pools and networks). */
  private async destroyOn(ctx: Parameters<Provisioner["destroy"]>[0], conn: LibvirtConnection, uri: string) {
    const lab = ctx.labName;
    const on = ` (${uri})`;
    for (const [node, d] of await labDomains(conn, lab)) {
      await step(ctx.reporter, "vm.remove", () => conn.removeDomain(d.name), { node, message: d.name + on });
    }
    for (const net of (await conn.listNetworks()).filter((n) => isLabObjectName(lab, n.name))) {
      await step(ctx.reporter, "libvirt.network.remove", () => conn.removeNetwork(net.name), {
        message: net.name + on,
      });
    }
    const pools = (await conn.listPools()).filter((p) => isLabObjectName(lab, p));
    // Directories of pools whose definition was lost (or never made it) are found here too.
    const dirs = isLocalUri(uri) ? await readdir(POOL_PARENT).catch(() => [] as string[]) : [];
    for (const name of [poolName(lab), ...dirs.filter((d) => isLabObjectName(lab, d))])
      if (!pools.includes(name)) pools.push(name);
    for (const pool of pools) {
      await step(
        ctx.reporter,
        "libvirt.pool.remove",
        async () => {
          await conn.removePool(pool);
          if (isLocalUri(uri)) await rm(join(POOL_PARENT, pool), { recursive: true, force: true });
        },
        { message: pool + on },
      );
    }
  }

  /** ACPI shutdown (`virsh shutdown`), polled until the domain is off; destroyed at the deadline. */
  async shutdown(ctx: ProvisionContext, node: string, opts: { timeoutMs: number }): Promise<ShutdownResult> {
    const site = labSites(ctx.plan).find((s) => s.nodes.some((n) => n.name === node));
    if (!site) throw new LabError({ code: "NODE_UNKNOWN", what: `lab ${ctx.plan.lab} has no node ${node}` });
    const conn = await this.connect(site.uri);
    try {
      const dom = (await labDomains(conn, ctx.plan.lab, site.tag)).get(node);
      if (dom?.state !== "running") return { clean: true, detail: "not running" };
      const off = async () => (await labDomains(conn, ctx.plan.lab, site.tag)).get(node)?.state !== "running";
      await conn.shutdownDomain(dom.name);
      const deadline = Date.now() + opts.timeoutMs;
      while (Date.now() < deadline) {
        if (await off()) return { clean: true };
        await sleep(500);
      }
      if (await off()) return { clean: true };
      await conn.destroyDomain(dom.name);
      return {
        clean: false,
        detail: `libvirt domain ${dom.name} still running ${Math.round(opts.timeoutMs / 1000)} s after virsh shutdown; destroyed it`,
      };
    } finally {
      await conn.close();
    }
  }

  async collectLogs(ctx: ProvisionContext, dir: string): Promise<void> {
    for (const site of labSites(ctx.plan)) {
      const conn = await this.connect(site.uri);
      try {
        const pool = poolName(ctx.plan.lab, site.tag);
        if (!(await conn.listPools()).includes(pool)) continue;
        await mkdir(dir, { recursive: true });
        const have = await conn.listVolumes(pool);
        for (const node of site.nodes) {
          const v = volumes.console(node.name);
          if (have.includes(v)) await conn.downloadVolume(pool, v, join(dir, `${node.name}.console.log`));
        }
      } finally {
        await conn.close();
      }
    }
  }
}
