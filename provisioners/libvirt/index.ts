/**
 * The libvirt provisioner: a lab as ordinary libvirt domains (visible to virsh and virt-manager),
 * on one hypervisor or spread over several (a URI per node). Each hypervisor gets the lab's own
 * storage pool and network: an isolated per-lab network by default, or a network onto a host
 * bridge the user names (which is what joins several hypervisors). Everything it creates carries
 * the lab's name (domains also a metadata marker), so `lab down` finds it without the lab's state.
 * It only produces machines that accept SSH; the bootstrap after that is the shared one.
 */
import { existsSync } from "node:fs";
import { mkdir, readdir, rm, symlink } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import type { PlannedNode } from "../../topology/plan.ts";
import { LabError } from "../../topology/errors.ts";
import { step } from "../../topology/progress.ts";
import {
  parseLabMarker,
  renderBridgeNetworkXml,
  renderDomainXml,
  renderNetworkXml,
  renderPoolXml,
  type DomainSpec,
  type DomainType,
} from "../../templates/libvirt-domain.ts";
import { ensureHostKey, ensureLabSshKey } from "../keys.ts";
import type { Machine, MachineStatus, ProvisionContext, Provisioner, SshJump } from "../provisioner.ts";
import { connectJump, execOnJump } from "../ssh-jump.ts";
import { chooseDomainType, localKvmFacts, type KvmFacts } from "./accel.ts";
import { TCG_TB_CACHE_MIB } from "../qemu/accel.ts";
import { hypervisorJump, knownHostsName, parseRemoteUri } from "./remote.ts";
import { openLibvirt, type DomainRecord, type LibvirtConnection } from "./connection.ts";
import {
  bridgeName,
  DEFAULT_URI,
  domainName,
  isLabObjectName,
  isLocalUri,
  networkName,
  poolName,
  poolPath,
  POOL_PARENT,
  volumes,
} from "./names.ts";
import {
  bridgeAddressProblem,
  labBridge,
  labSites,
  parseIpAddrs,
  providerUri,
  siteWhere,
  type HostAddress,
  type Site,
} from "./placement.ts";

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

/** What the lab's state records per hypervisor, so `lab down` finds them and `up` skips a finished upload. */
interface SiteRecord {
  uri: string;
  tag: string;
  uploadedImage?: string;
  /** Set while an upload runs: an interrupted upload leaves volumes that look complete. */
  uploading?: string;
}
interface LibvirtStateFile {
  sites?: SiteRecord[];
  /** The single-hypervisor format of earlier versions (read, never written). */
  uri?: string;
  uploadedImage?: string;
  uploading?: string;
}
const STATE_FILE = "libvirt.json";

async function readSiteRecords(state: ProvisionContext["state"]): Promise<SiteRecord[]> {
  const f = await state.readJson<LibvirtStateFile>(STATE_FILE).catch(() => undefined);
  if (!f) return [];
  if (f.sites) return f.sites;
  if (!f.uri) return [];
  const { uploadedImage, uploading } = f;
  return [
    { uri: f.uri, tag: "", ...(uploadedImage ? { uploadedImage } : {}), ...(uploading ? { uploading } : {}) },
  ];
}

/** Replaces the record of one hypervisor (by URI), keeping the others'. */
async function writeSiteRecord(state: ProvisionContext["state"], rec: SiteRecord): Promise<void> {
  const all = await readSiteRecords(state);
  const i = all.findIndex((r) => r.uri === rec.uri);
  if (i >= 0) all[i] = rec;
  else all.push(rec);
  await state.writeJson(STATE_FILE, { sites: all } satisfies LibvirtStateFile);
}

/**
 * Domains of one lab on a connection, by node name, recognised by their metadata marker; with
 * `site`, only those placed on that hypervisor (two URIs may reach one libvirtd).
 */
export async function labDomains(
  conn: LibvirtConnection,
  lab: string,
  site?: string,
): Promise<Map<string, DomainRecord>> {
  const out = new Map<string, DomainRecord>();
  for (const d of await conn.listDomains()) {
    const m = parseLabMarker(d.xml);
    if (m?.lab !== lab) continue;
    if (site !== undefined && (m.site ?? "") !== site.replace(/^\./, "")) continue;
    out.set(m.node, d);
  }
  return out;
}

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
function relocate(err: LabError, where: string, uri?: string): LabError {
  return new LabError({
    code: err.code,
    what: uri && !err.what.includes(uri) ? `${err.what} (libvirt at ${uri})` : err.what,
    where,
    ...(err.fix ? { fix: err.fix } : {}),
    source: err.source,
    cause: err,
  });
}

interface HypervisorFacts extends KvmFacts {
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
interface OpenSite extends Site {
  conn: LibvirtConnection;
  jump?: SshJump;
  facts: HypervisorFacts;
}

export class LibvirtProvisioner implements Provisioner {
  readonly name = "libvirt" as const;

  constructor(private readonly deps: LibvirtDeps) {}

  private connect(uri: string): Promise<LibvirtConnection> {
    return (this.deps.connect ?? openLibvirt)(uri);
  }

  /**
   * Connects to one hypervisor and checks everything that can be checked before anything is
   * created: the jump's pinned key and login, and in bridge mode the bridge and the subnet.
   */
  private async openSite(ctx: ProvisionContext, site: Site): Promise<OpenSite> {
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
        this.connect(site.uri).catch((err: unknown) => {
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
  private async openSites(ctx: ProvisionContext): Promise<OpenSite[]> {
    const results = await Promise.allSettled(labSites(ctx.plan).map((s) => this.openSite(ctx, s)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) {
      for (const r of results) if (r.status === "fulfilled") await r.value.conn.close();
      throw failed.reason;
    }
    return results.map((r) => (r as PromiseFulfilledResult<OpenSite>).value);
  }

  async create(ctx: ProvisionContext): Promise<Machine[]> {
    const { plan, state, reporter } = ctx;
    await state.ensure();
    const sites = await this.openSites(ctx);
    try {
      // Recorded once every hypervisor answered: from here on each may hold something of this lab's.
      for (const s of sites) {
        const prev = (await readSiteRecords(state)).find((r) => r.uri === s.uri);
        await writeSiteRecord(state, { ...prev, uri: s.uri, tag: s.tag });
      }
      const sshKey = await ensureLabSshKey(state);
      const machines: { machine: Machine; consoleLog: string }[] = [];
      for (const site of sites) machines.push(...(await this.createOnSite(ctx, site, sshKey.privateKeyPath)));

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
          step(reporter, "vm.ssh-ready", () => this.deps.waitForSsh(ctx, m, consoleLog), {
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

  /** The lab's pool, image, network and domains on one hypervisor. */
  private async createOnSite(
    ctx: ProvisionContext,
    site: OpenSite,
    privateKeyPath: string,
  ): Promise<{ machine: Machine; consoleLog: string }[]> {
    const { plan, state, reporter } = ctx;
    const { conn, jump, tag } = site;
    const type = this.deps.domainType ?? chooseDomainType(site.facts);
    const on = tag ? ` on ${site.uri}` : "";
    if (type === "qemu")
      reporter.notice(`KVM is not usable${on || " here"}: libvirt domains use TCG (software, slower)`);

    const lab = plan.lab;
    const pool = poolName(lab, tag);
    const existing = await labDomains(conn, lab, tag);
    const all = await conn.listDomains();
    for (const node of site.nodes) {
      const other = all.find((d) => d.name === domainName(lab, node.name));
      if (other && !existing.has(node.name)) {
        const marker = parseLabMarker(other.xml);
        throw new LabError({
          code: "LIBVIRT_NAME_TAKEN",
          what:
            marker?.lab === lab
              ? `the libvirt domain ${other.name} at ${site.uri} belongs to lab ${lab}'s node ${node.name} on another hypervisor`
              : `a libvirt domain named ${other.name} exists at ${site.uri} but does not belong to lab ${lab}`,
          where: `node ${node.name}`,
          fix:
            marker?.lab === lab
              ? `run \`lab down ${lab}\` before moving nodes between hypervisors`
              : `rename the lab, or remove that domain (virsh undefine ${other.name}) if it is not needed`,
        });
      }
    }

    await step(
      reporter,
      "libvirt.pool",
      () => conn.ensurePool(pool, renderPoolXml({ name: pool, path: poolPath(lab, tag) })),
      { message: `${pool}${on}` },
    );
    const image = await this.deps.image(ctx);
    const paths = await step(
      reporter,
      "libvirt.image",
      async () => {
        const have = await conn.listVolumes(pool);
        const saved = (await readSiteRecords(state)).find((r) => r.uri === site.uri);
        const record = (r: Omit<SiteRecord, "uri" | "tag">) =>
          writeSiteRecord(state, { uri: site.uri, tag, ...r });
        const recorded = saved?.uploadedImage;
        const wanted = image.kernel ? [volumes.base, volumes.kernel, volumes.initrd] : [volumes.base];
        const complete = wanted.every((v) => have.includes(v));
        const running = [...existing.values()].some((d) => d.state === "running");
        const changed = recorded !== undefined && recorded !== image.key;
        if (complete && running && changed) {
          // Overwriting a base under running overlays would corrupt them.
          reporter.notice(
            `the image changed, but lab ${lab} is running${on}: its nodes keep the old image until \`lab down\``,
          );
        } else if (!complete || changed || saved?.uploading) {
          if (running) {
            throw new LabError({
              code: "LIBVIRT_POOL_INCOMPLETE",
              what: `the image volumes of pool ${pool}${on} are missing or incomplete while nodes of lab ${lab} run`,
              fix: `run \`lab down ${lab}\`, then \`lab up\` again`,
              source: "host",
            });
          }
          // Overlays on an old base are not valid on the new one; their domains are stopped.
          for (const node of site.nodes) {
            if (changed && have.includes(volumes.disk(node.name)))
              await conn.deleteVolume(pool, volumes.disk(node.name));
          }
          await record({ uploading: image.key });
          await conn.uploadVolume(pool, volumes.base, image.disk);
          if (image.kernel) {
            await conn.uploadVolume(pool, volumes.kernel, image.kernel.path);
            await conn.uploadVolume(pool, volumes.initrd, image.kernel.initrd);
          }
        }
        if (!running || !changed) await record({ uploadedImage: image.key });
        return {
          base: await conn.volumePath(pool, volumes.base),
          kernel: image.kernel && {
            path: await conn.volumePath(pool, volumes.kernel),
            initrd: await conn.volumePath(pool, volumes.initrd),
            cmdline: image.kernel.cmdline,
          },
        };
      },
      { message: `${pool}${on}` },
    );
    const network = networkName(lab, tag);
    const bridge = labBridge(plan);
    await step(
      reporter,
      "libvirt.network",
      () =>
        conn.ensureNetwork(
          network,
          bridge
            ? renderBridgeNetworkXml({ name: network, bridge })
            : renderNetworkXml({
                name: network,
                bridge: bridgeName(plan.id),
                gateway: plan.network.gateway,
                prefix: plan.network.prefix,
              }),
        ),
      { message: bridge ? `${network} onto ${bridge}${on}` : network },
    );

    const out: { machine: Machine; consoleLog: string }[] = [];
    for (const node of site.nodes) {
      const hostKey = await ensureHostKey(state, node.name);
      const dom = existing.get(node.name);
      const consoleLog = `${poolPath(lab, tag)}/${volumes.console(node.name)}`;
      if (dom?.state === "running") {
        reporter.event({ step: "vm.start", node: node.name, state: "skipped", message: "already running" });
      } else {
        await step(
          reporter,
          "vm.start",
          async () => {
            const name = domainName(lab, node.name);
            // A stopped domain is redefined from the current plan; libvirt refuses a
            // redefinition without the old UUID, so it goes first.
            if (dom) await conn.removeDomain(name);
            const seedFile = await this.deps.seed(ctx, node);
            const seed = await conn.uploadVolume(pool, volumes.seed(node.name), seedFile);
            const have = await conn.listVolumes(pool);
            const disk = have.includes(volumes.disk(node.name))
              ? await conn.volumePath(pool, volumes.disk(node.name))
              : await conn.createVolume(pool, {
                  name: volumes.disk(node.name),
                  capacityMiB: node.diskMiB,
                  format: "qcow2",
                  backing: { path: paths.base, format: image.format },
                });
            const spec: DomainSpec = {
              name,
              lab,
              node: node.name,
              role: node.role,
              ...(tag ? { site: tag.slice(1) } : {}),
              type,
              cpus: node.cpus,
              memoryMiB: node.memoryMiB,
              mac: node.mac,
              network,
              disk,
              seed,
              kernel: paths.kernel,
              consoleLog,
              tbCacheMiB: TCG_TB_CACHE_MIB,
            };
            // `lab logs NODE --console` reads the console where the qemu provider keeps it (on a
            // remote hypervisor the file is there; `lab export logs` downloads it).
            await mkdir(state.path("vms", node.name), { recursive: true, mode: 0o700 });
            await rm(state.path("vms", node.name, "console.log"), { force: true });
            if (!jump) await symlink(spec.consoleLog, state.path("vms", node.name, "console.log"));
            await conn.defineDomain(renderDomainXml(spec));
            await conn.startDomain(name);
          },
          {
            node: node.name,
            message: `defining ${domainName(lab, node.name)}${on} (${type}, ${node.cpus} vCPU, ${node.memoryMiB} MiB)`,
          },
        );
      }
      out.push({
        consoleLog,
        machine: {
          name: node.name,
          role: node.role,
          address: node.address,
          ssh: {
            host: node.address,
            port: 22,
            user: node.ssh.user,
            privateKeyPath,
            hostKey: hostKey.publicKey,
            ...(jump ? { jump } : {}),
          },
        },
      });
    }
    return out;
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
