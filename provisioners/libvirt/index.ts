/**
 * The libvirt provisioner: a lab as ordinary libvirt domains (visible to virsh and virt-manager),
 * one isolated libvirt network and one storage pool per lab. Everything it creates carries the
 * lab's name (domains also a metadata marker), so `lab down` finds it without the lab's state.
 * It only produces machines that accept SSH; the bootstrap after that is the shared one.
 */
import { existsSync } from "node:fs";
import { mkdir, rm, symlink } from "node:fs/promises";
import { join } from "node:path";
import type { PlannedNode } from "../../topology/plan.ts";
import { LabError } from "../../topology/errors.ts";
import { step } from "../../topology/progress.ts";
import {
  parseLabMarker,
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
import { hypervisorJump, knownHostsName, parseRemoteUri } from "./remote.ts";
import { openLibvirt, type DomainRecord, type LibvirtConnection } from "./connection.ts";
import {
  bridgeName,
  DEFAULT_URI,
  domainName,
  isLocalUri,
  networkName,
  poolName,
  poolPath,
  volumes,
} from "./names.ts";

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
  /** Resolves once the machine accepts SSH with its pinned host key. */
  waitForSsh(ctx: ProvisionContext, machine: Machine): Promise<void>;
  /** Overrides the domain type decision (tests); default: kvm only where usable. */
  domainType?: DomainType;
  /** Opens the connection (tests may wrap it); default: openLibvirt. */
  connect?(uri: string): Promise<LibvirtConnection>;
}

/** Kept in the lab's state so `lab down` knows the URI and `up` skips a finished upload. */
interface LibvirtStateFile {
  uri: string;
  uploadedImage?: string;
  /** Set while an upload runs: an interrupted upload leaves volumes that look complete. */
  uploading?: string;
}
const STATE_FILE = "libvirt.json";

/** TCG translation cache per VM: ~350 MB RSS instead of ~1.3 GB with QEMU's default. */
const TB_CACHE_MIB = 64;

/** Domains of one lab on a connection, by node name, recognised by their metadata marker. */
export async function labDomains(conn: LibvirtConnection, lab: string): Promise<Map<string, DomainRecord>> {
  const out = new Map<string, DomainRecord>();
  for (const d of await conn.listDomains()) {
    const m = parseLabMarker(d.xml);
    if (m?.lab === lab) out.set(m.node, d);
  }
  return out;
}

/** The pinned SSH jump to a remote hypervisor; only SSH transports can provide one. */
async function hypervisorJumpFor(ctx: ProvisionContext, uri: string): Promise<SshJump> {
  const remote = parseRemoteUri(uri);
  if (!remote) {
    throw new LabError({
      code: "LIBVIRT_REMOTE_UNSUPPORTED",
      what: `remote libvirt URI ${uri} is not an SSH transport: lab reaches a remote hypervisor's lab network only through SSH`,
      where: "spec.provider.uri",
      fix: "use qemu+ssh://user@host/system (or run lab on the hypervisor with qemu:///system)",
    });
  }
  const p = ctx.plan.provider;
  return hypervisorJump(remote, p.type === "libvirt" ? p.hostKey : undefined);
}

/** KVM facts of a remote hypervisor, asked over the pinned SSH jump, and the key it presented. */
async function remoteFacts(jump: SshJump): Promise<KvmFacts & { hostPublicKey: string }> {
  const conn = await connectJump(jump);
  try {
    const r = await execOnJump(
      conn,
      "test -r /dev/kvm -a -w /dev/kvm && echo kvm-device; grep -qE '^flags\\s*:.*\\b(vmx|svm)\\b' /proc/cpuinfo && echo cpu-virt; true",
    );
    return {
      kvmDevice: r.stdout.includes("kvm-device"),
      cpuVirt: r.stdout.includes("cpu-virt"),
      hostPublicKey: conn.hostPublicKey,
    };
  } finally {
    conn.close();
  }
}

function libvirtUri(ctx: { plan?: ProvisionContext["plan"] }): string | undefined {
  const p = ctx.plan?.provider;
  return p?.type === "libvirt" ? p.uri : undefined;
}

export class LibvirtProvisioner implements Provisioner {
  readonly name = "libvirt" as const;

  constructor(private readonly deps: LibvirtDeps) {}

  private connect(uri: string): Promise<LibvirtConnection> {
    return (this.deps.connect ?? openLibvirt)(uri);
  }

  async create(ctx: ProvisionContext): Promise<Machine[]> {
    const { plan, state, reporter } = ctx;
    const uri = libvirtUri(ctx) ?? DEFAULT_URI;
    // A remote hypervisor's lab network is reachable only from that host: an SSH jump through it,
    // pinned before anything is created.
    const jump = isLocalUri(uri) ? undefined : await hypervisorJumpFor(ctx, uri);
    await state.ensure();
    const conn = await step(reporter, "libvirt.connect", () => this.connect(uri), { message: uri });
    try {
      // Written once connected: from here on the hypervisor may hold something of this lab's.
      const saved = (await state.readJson<LibvirtStateFile>(STATE_FILE)) ?? { uri };
      await state.writeJson(STATE_FILE, { ...saved, uri } satisfies LibvirtStateFile);
      // The jump is checked (pinned key, login) before anything is created on the hypervisor.
      const hypervisor =
        jump &&
        (await step(reporter, "libvirt.hypervisor", () => remoteFacts(jump), {
          message: `SSH to ${jump.user}@${jump.host}:${jump.port} (the jump to the lab network)`,
        }));
      const type = this.deps.domainType ?? chooseDomainType(hypervisor ?? (await localKvmFacts()));
      if (type === "qemu")
        reporter.notice("KVM is not usable here: libvirt domains use TCG (software, slower)");

      const lab = plan.lab;
      const pool = poolName(lab);
      const existing = await labDomains(conn, lab);
      for (const node of plan.nodes) {
        const other = (await conn.listDomains()).find((d) => d.name === domainName(lab, node.name));
        if (other && !existing.has(node.name)) {
          throw new LabError({
            code: "LIBVIRT_NAME_TAKEN",
            what: `a libvirt domain named ${other.name} exists but does not belong to lab ${lab}`,
            where: `node ${node.name}`,
            fix: `rename the lab, or remove that domain (virsh undefine ${other.name}) if it is not needed`,
          });
        }
      }

      await step(reporter, "libvirt.pool", () =>
        conn.ensurePool(pool, renderPoolXml({ name: pool, path: poolPath(lab) })),
      );
      const image = await this.deps.image(ctx);
      const paths = await step(reporter, "libvirt.image", async () => {
        const have = await conn.listVolumes(pool);
        const saved = await state.readJson<LibvirtStateFile>(STATE_FILE);
        const recorded = saved?.uploadedImage;
        const wanted = image.kernel ? [volumes.base, volumes.kernel, volumes.initrd] : [volumes.base];
        const complete = wanted.every((v) => have.includes(v));
        const running = [...existing.values()].some((d) => d.state === "running");
        const changed = recorded !== undefined && recorded !== image.key;
        if (complete && running && changed) {
          // Overwriting a base under running overlays would corrupt them.
          reporter.notice(
            `the image changed, but lab ${lab} is running: its nodes keep the old image until \`lab down\``,
          );
        } else if (!complete || changed || saved?.uploading) {
          if (running) {
            throw new LabError({
              code: "LIBVIRT_POOL_INCOMPLETE",
              what: `the image volumes of pool ${pool} are missing or incomplete while nodes of lab ${lab} run`,
              fix: `run \`lab down ${lab}\`, then \`lab up\` again`,
              source: "host",
            });
          }
          // Overlays on an old base are not valid on the new one; their domains are stopped.
          for (const node of plan.nodes) {
            if (changed && have.includes(volumes.disk(node.name)))
              await conn.deleteVolume(pool, volumes.disk(node.name));
          }
          await state.writeJson(STATE_FILE, { uri, uploading: image.key } satisfies LibvirtStateFile);
          await conn.uploadVolume(pool, volumes.base, image.disk);
          if (image.kernel) {
            await conn.uploadVolume(pool, volumes.kernel, image.kernel.path);
            await conn.uploadVolume(pool, volumes.initrd, image.kernel.initrd);
          }
        }
        if (!running || !changed) {
          await state.writeJson(STATE_FILE, { uri, uploadedImage: image.key } satisfies LibvirtStateFile);
        }
        return {
          base: await conn.volumePath(pool, volumes.base),
          kernel: image.kernel && {
            path: await conn.volumePath(pool, volumes.kernel),
            initrd: await conn.volumePath(pool, volumes.initrd),
            cmdline: image.kernel.cmdline,
          },
        };
      });
      await step(reporter, "libvirt.network", () =>
        conn.ensureNetwork(
          networkName(lab),
          renderNetworkXml({
            name: networkName(lab),
            bridge: bridgeName(plan.id),
            gateway: plan.network.gateway,
            prefix: plan.network.prefix,
          }),
        ),
      );

      const sshKey = await ensureLabSshKey(state);
      const machines: Machine[] = [];
      for (const node of plan.nodes) {
        const hostKey = await ensureHostKey(state, node.name);
        const dom = existing.get(node.name);
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
                type,
                cpus: node.cpus,
                memoryMiB: node.memoryMiB,
                mac: node.mac,
                network: networkName(lab),
                disk,
                seed,
                kernel: paths.kernel,
                consoleLog: `${poolPath(lab)}/${volumes.console(node.name)}`,
                tbCacheMiB: TB_CACHE_MIB,
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
              message: `defining ${domainName(lab, node.name)} (${type}, ${node.cpus} vCPU, ${node.memoryMiB} MiB)`,
            },
          );
        }
        machines.push({
          name: node.name,
          role: node.role,
          address: node.address,
          ssh: {
            host: node.address,
            port: 22,
            user: node.ssh.user,
            privateKeyPath: sshKey.privateKeyPath,
            hostKey: hostKey.publicKey,
            ...(jump ? { jump } : {}),
          },
        });
      }
      // `lab ssh` and the bootstrap pin the host keys through this file (the hypervisor's too:
      // `lab ssh` jumps through it with OpenSSH).
      const hypervisorLine =
        jump && hypervisor ? [`${knownHostsName(jump.host, jump.port)} ${hypervisor.hostPublicKey}`] : [];
      await state.writeSecret(
        "ssh/known_hosts",
        [
          ...machines.map((m) => `${m.ssh.host} ${m.ssh.hostKey.split(/\s+/).slice(0, 2).join(" ")}`),
          ...hypervisorLine,
        ].join("\n") + "\n",
      );
      // All domains boot at once; wait for them together.
      await Promise.all(
        machines.map((m) =>
          step(reporter, "vm.ssh-ready", () => this.deps.waitForSsh(ctx, m), {
            node: m.name,
            message: `waiting for SSH on ${m.address} with the pinned host key`,
          }),
        ),
      );
      return machines;
    } finally {
      await conn.close();
    }
  }

  async status(ctx: ProvisionContext): Promise<MachineStatus[]> {
    const uri = await this.uriOf(ctx, ctx.plan.lab);
    const conn = await this.connect(uri);
    try {
      const doms = await labDomains(conn, ctx.plan.lab);
      const names = new Set([...ctx.plan.nodes.map((n) => n.name), ...doms.keys()]);
      return [...names].map((name) => {
        const d = doms.get(name);
        if (!d) return { name, state: "missing" };
        const planned = ctx.plan.nodes.some((n) => n.name === name);
        return {
          name,
          state: d.state === "running" ? "running" : d.state === "stopped" ? "stopped" : "unknown",
          detail: planned
            ? `libvirt domain ${d.name} (${d.state})`
            : `libvirt domain ${d.name}, not in the plan`,
        };
      });
    } finally {
      await conn.close();
    }
  }

  async destroy(ctx: Parameters<Provisioner["destroy"]>[0]): Promise<void> {
    const lab = ctx.labName;
    const uri = await this.uriOf(ctx, lab);
    let conn: LibvirtConnection;
    try {
      conn = await this.connect(uri);
    } catch (err) {
      // Nothing of ours can exist when `up` never got a connection (libvirt.json is written right
      // after it), e.g. libvirtd was never installed, or `lab down` asks every provisioner about
      // a lab of unknown kind. Otherwise removal cannot be confirmed: that is an error.
      const usedLibvirt = existsSync(ctx.state.path(STATE_FILE));
      const noLibvirt =
        err instanceof LabError &&
        ["LIBVIRT_UNREACHABLE", "LIBVIRT_BINDING_MISSING", "HOST_TOOL_MISSING"].includes(err.code);
      if (noLibvirt && !usedLibvirt) {
        if (libvirtUri(ctx))
          ctx.reporter.notice(`libvirt at ${uri} is unreachable; lab ${lab} never created anything there`);
        return;
      }
      throw err;
    }
    try {
      for (const [node, d] of await labDomains(conn, lab)) {
        await step(ctx.reporter, "vm.remove", () => conn.removeDomain(d.name), { node });
      }
      await step(ctx.reporter, "libvirt.network.remove", () => conn.removeNetwork(networkName(lab)));
      await step(ctx.reporter, "libvirt.pool.remove", async () => {
        await conn.removePool(poolName(lab));
        // A pool whose definition was lost (or never made it) still leaves its directory here.
        if (isLocalUri(uri)) await rm(poolPath(lab), { recursive: true, force: true });
      });
    } finally {
      await conn.close();
    }
  }

  async collectLogs(ctx: ProvisionContext, dir: string): Promise<void> {
    const uri = await this.uriOf(ctx, ctx.plan.lab);
    const conn = await this.connect(uri);
    try {
      const pool = poolName(ctx.plan.lab);
      if (!(await conn.listPools()).includes(pool)) return;
      await mkdir(dir, { recursive: true });
      const have = await conn.listVolumes(pool);
      for (const node of ctx.plan.nodes) {
        const v = volumes.console(node.name);
        if (have.includes(v)) await conn.downloadVolume(pool, v, join(dir, `${node.name}.console.log`));
      }
    } finally {
      await conn.close();
    }
  }

  /** The plan's URI, else the one recorded at `up`, else the default. */
  private async uriOf(
    ctx: { plan?: ProvisionContext["plan"]; state: ProvisionContext["state"] },
    _lab: string,
  ) {
    const fromPlan = libvirtUri(ctx);
    if (fromPlan) return fromPlan;
    const saved = await ctx.state.readJson<LibvirtStateFile>(STATE_FILE).catch(() => undefined);
    return saved?.uri ?? DEFAULT_URI;
  }
}
