/**
 * The only place that talks to libvirt. Domains go through the `@unraid/libvirt` N-API binding;
 * networks, storage pools and volumes through `virsh` (libvirt-clients), because the binding
 * has no network or storage API. Both use the same URI, so a remote `qemu+ssh://` hypervisor
 * works for all of it. The binding is imported lazily: nothing else in lab needs it to load.
 */
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa, type ExecaError } from "execa";
import { LabError } from "../../topology/errors.ts";
import { isLocalUri } from "./names.ts";

/**
 * The part of @unraid/libvirt used here, written out so that type checks pass on machines where
 * the optional binding did not build (no libvirt-dev at `npm ci`).
 */
interface Domain {
  getName(): Promise<string>;
  getInfo(): Promise<{ state: number }>;
  getXMLDesc(flags?: number): Promise<string>;
  create(): Promise<void>;
  destroy(): Promise<void>;
  shutdown(): Promise<void>;
  undefine(): Promise<void>;
}
interface Hypervisor {
  connectOpen(): Promise<void>;
  connectClose(): Promise<void>;
  connectListAllDomains(): Promise<Domain[]>;
  domainDefineXML(xml: string): Promise<Domain>;
  domainLookupByName(name: string): Promise<Domain>;
}
interface Binding {
  Hypervisor: new (opts: { uri: string }) => Hypervisor;
}
/** A variable, so TypeScript does not need the (optional) package to resolve. */
const BINDING = "@unraid/libvirt";

export type DomainRunState = "running" | "stopped" | "paused" | "other";

export interface DomainRecord {
  name: string;
  state: DomainRunState;
  /** Inactive (persistent) definition, where the lab's metadata marker lives. */
  xml: string;
}

export interface VolumeSpec {
  name: string;
  capacityMiB: number;
  format: "qcow2" | "raw";
  /** Path of a backing file on the hypervisor (qcow2 overlays). */
  backing?: { path: string; format: "qcow2" | "raw" };
}

export interface LibvirtConnection {
  readonly uri: string;
  listDomains(): Promise<DomainRecord[]>;
  defineDomain(xml: string): Promise<void>;
  startDomain(name: string): Promise<void>;
  /** Stops (hard) and undefines; a domain that is not there is not an error. */
  removeDomain(name: string): Promise<void>;
  /** Asks the guest to power off (ACPI, `virsh shutdown`); returns at once. */
  shutdownDomain(name: string): Promise<void>;
  /** Powers a running domain off hard (`virsh destroy`), keeping its definition and disks. */
  destroyDomain(name: string): Promise<void>;

  listNetworks(): Promise<{ name: string; active: boolean }[]>;
  /** Defines and starts the network unless it already exists; starts it when inactive. */
  ensureNetwork(name: string, xml: string): Promise<void>;
  removeNetwork(name: string): Promise<void>;

  /**
   * The type libvirt's interface API reports for a host interface (`bridge`, `ethernet`, ...),
   * or undefined when the hypervisor has no interface of that name.
   */
  interfaceType(name: string): Promise<string | undefined>;

  listPools(): Promise<string[]>;
  /** Defines, builds (mkdir) and starts the pool unless it exists; starts it when inactive. */
  ensurePool(name: string, xml: string): Promise<void>;
  /** Deletes every volume, stops, deletes the directory and undefines the pool. */
  removePool(name: string): Promise<void>;
  listVolumes(pool: string): Promise<string[]>;
  createVolume(pool: string, v: VolumeSpec): Promise<string>;
  /** Copies a local file into a (new or existing) volume; returns the volume's path. */
  uploadVolume(pool: string, name: string, file: string): Promise<string>;
  deleteVolume(pool: string, name: string): Promise<void>;
  volumePath(pool: string, name: string): Promise<string>;
  /** Copies a volume to a local file (console logs). */
  downloadVolume(pool: string, name: string, file: string): Promise<void>;
  close(): Promise<void>;
}

/** The fix for a libvirtd that is missing or not running, for the URI the user gave. */
export function unreachableFix(uri: string): string {
  if (!isLocalUri(uri)) {
    return `check that libvirtd runs on the host in ${uri} and that this machine can log in there (for qemu+ssh: key-based SSH as a user in the libvirt group)`;
  }
  return (
    "install libvirt (`apt-get install -o Dpkg::Options::=--force-confold libvirt-daemon-system " +
    "libvirt-daemon-driver-qemu libvirt-clients`, or `lab doctor --fix --group libvirt`) and start it: " +
    "`systemctl start libvirtd`, or without systemd `scripts/start-libvirtd.sh` " +
    "(mkdir -p /var/log/libvirt; virtlogd -d; libvirtd -d)"
  );
}

function unreachable(uri: string, detail: string, cause?: unknown): LabError {
  return new LabError({
    code: "LIBVIRT_UNREACHABLE",
    what: `cannot connect to libvirt at ${uri}: ${detail}`,
    where: "spec.provider.uri",
    fix: unreachableFix(uri),
    source: "host",
    cause,
  });
}

const isNotFound = (msg: string) => /not found|no (domain|network|storage pool|storage vol)/i.test(msg);

/** Opens a connection, turning every way of not getting one into one clear LabError. */
export async function openLibvirt(uri: string): Promise<LibvirtConnection> {
  let mod: Binding;
  try {
    mod = (await import(BINDING)) as Binding;
  } catch (err) {
    throw new LabError({
      code: "LIBVIRT_BINDING_MISSING",
      what: `the libvirt binding (@unraid/libvirt) did not load: ${(err as Error).message.split("\n")[0]}`,
      fix: "it compiles at `npm ci`: install libvirt-dev, g++ and make first, then `npm rebuild @unraid/libvirt`",
      source: "host",
      cause: err,
    });
  }
  const hv = new mod.Hypervisor({ uri });
  try {
    await hv.connectOpen();
  } catch (err) {
    throw unreachable(uri, (err as Error).message, err);
  }
  const conn = new BindingConnection(uri, hv);
  // virsh carries networks and storage: check it is there now, not halfway through `up`.
  await conn.virsh(["uri"]);
  return conn;
}

const STATE: Record<number, DomainRunState> = { 1: "running", 2: "running", 3: "paused", 5: "stopped" };

class BindingConnection implements LibvirtConnection {
  constructor(
    readonly uri: string,
    private readonly hv: Hypervisor,
  ) {}

  /** Runs virsh against this URI; libvirt's own message becomes the error's text. */
  async virsh(args: string[], opts: { allowNotFound?: boolean } = {}): Promise<string> {
    try {
      const r = await execa("virsh", ["-q", "-c", this.uri, ...args], { stdin: "ignore" });
      return r.stdout;
    } catch (err) {
      const e = err as ExecaError;
      if (e.code === "ENOENT") {
        throw new LabError({
          code: "HOST_TOOL_MISSING",
          what: "virsh is not installed",
          fix: "apt-get install libvirt-clients (or `lab doctor --fix --group libvirt`)",
          source: "host",
        });
      }
      const msg = String(e.stderr ?? "")
        .split("\n")
        .map((l) => l.replace(/^error:\s*/, "").trim())
        .filter(Boolean)
        .join(": ");
      if (opts.allowNotFound && isNotFound(msg)) return "";
      if (/failed to connect to the hypervisor/.test(msg)) throw unreachable(this.uri, msg, err);
      throw new LabError({
        code: "LIBVIRT_FAILED",
        what: `virsh ${args[0]} failed: ${msg || e.shortMessage}`,
        fix: "see libvirtd's log (/var/log/libvirt/libvirtd.log or `journalctl -u libvirtd`)",
        source: "host",
        cause: err,
      });
    }
  }

  private async lookup(name: string): Promise<Domain | undefined> {
    try {
      return await this.hv.domainLookupByName(name);
    } catch (err) {
      if (isNotFound((err as Error).message)) return undefined;
      throw this.failed("look up domain " + name, err);
    }
  }

  private failed(what: string, err: unknown): LabError {
    return new LabError({
      code: "LIBVIRT_FAILED",
      what: `libvirt could not ${what}: ${(err as Error).message}`,
      fix: "see libvirtd's log (/var/log/libvirt/libvirtd.log or `journalctl -u libvirtd`), and the domain's log under /var/log/libvirt/qemu/",
      source: "host",
      cause: err,
    });
  }

  async listDomains(): Promise<DomainRecord[]> {
    let domains: Domain[];
    try {
      domains = await this.hv.connectListAllDomains();
    } catch (err) {
      throw this.failed("list domains", err);
    }
    const out: DomainRecord[] = [];
    for (const d of domains) {
      try {
        const [name, info, xml] = await Promise.all([
          d.getName(),
          d.getInfo(),
          d.getXMLDesc(2 /* INACTIVE */),
        ]);
        out.push({ name, state: STATE[info.state] ?? "other", xml });
      } catch (err) {
        // Gone between listing and asking (someone else's domain being removed): not ours to report.
        if (!isNotFound((err as Error).message)) throw this.failed("read a domain", err);
      }
    }
    return out;
  }

  async defineDomain(xml: string): Promise<void> {
    try {
      await this.hv.domainDefineXML(xml);
    } catch (err) {
      throw this.failed("define a domain", err);
    }
  }

  async startDomain(name: string): Promise<void> {
    const d = await this.lookup(name);
    if (!d) throw this.failed(`start domain ${name}`, new Error("it does not exist"));
    try {
      await d.create();
    } catch (err) {
      throw this.failed(`start domain ${name}`, err);
    }
  }

  async shutdownDomain(name: string): Promise<void> {
    const d = await this.lookup(name);
    if (!d) return;
    try {
      await d.shutdown();
    } catch (err) {
      if (!/not running/i.test((err as Error).message)) throw this.failed(`shut down domain ${name}`, err);
    }
  }

  async destroyDomain(name: string): Promise<void> {
    const d = await this.lookup(name);
    if (!d) return;
    try {
      await d.destroy();
    } catch (err) {
      if (!/not running/i.test((err as Error).message)) throw this.failed(`stop domain ${name}`, err);
    }
  }

  async removeDomain(name: string): Promise<void> {
    const d = await this.lookup(name);
    if (!d) return;
    try {
      const info = await d.getInfo();
      if (info.state !== 5 /* SHUTOFF */) await d.destroy();
    } catch (err) {
      if (!/not running/i.test((err as Error).message)) throw this.failed(`stop domain ${name}`, err);
    }
    try {
      await d.undefine();
    } catch (err) {
      if (!isNotFound((err as Error).message)) throw this.failed(`undefine domain ${name}`, err);
    }
  }

  async listNetworks(): Promise<{ name: string; active: boolean }[]> {
    const out = await this.virsh(["net-list", "--all"]);
    return out
      .split("\n")
      .map((l) => l.trim().split(/\s+/))
      .filter((cols) => cols.length >= 2 && cols[0])
      .map((cols) => ({ name: cols[0]!, active: cols[1] === "active" }));
  }

  async ensureNetwork(name: string, xml: string): Promise<void> {
    const net = (await this.listNetworks()).find((n) => n.name === name);
    if (!net) await this.virshWithXml(["net-define"], xml);
    if (!net?.active) await this.virsh(["net-start", name]);
  }

  async removeNetwork(name: string): Promise<void> {
    const net = (await this.listNetworks()).find((n) => n.name === name);
    if (!net) return;
    if (net.active) await this.virsh(["net-destroy", name], { allowNotFound: true });
    await this.virsh(["net-undefine", name], { allowNotFound: true });
  }

  async interfaceType(name: string): Promise<string | undefined> {
    const xml = await this.virsh(["iface-dumpxml", name], { allowNotFound: true });
    if (!xml.trim()) return undefined;
    return /<interface\b[^>]*\btype=["']([^"']+)["']/.exec(xml)?.[1] ?? "unknown";
  }

  async listPools(): Promise<string[]> {
    return (await this.virsh(["pool-list", "--all", "--name"]))
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean);
  }

  private async poolActive(name: string): Promise<boolean> {
    const info = await this.virsh(["pool-info", name]);
    return /^State:\s+running/m.test(info);
  }

  async ensurePool(name: string, xml: string): Promise<void> {
    if (!(await this.listPools()).includes(name)) {
      await this.virshWithXml(["pool-define"], xml);
      await this.virsh(["pool-build", name]);
    }
    if (!(await this.poolActive(name))) await this.virsh(["pool-start", name]);
  }

  async removePool(name: string): Promise<void> {
    if (!(await this.listPools()).includes(name)) return;
    if (!(await this.poolActive(name))) {
      try {
        await this.virsh(["pool-start", name]);
      } catch {
        // Its directory is gone already: only the definition is left.
        await this.virsh(["pool-undefine", name], { allowNotFound: true });
        return;
      }
    }
    for (const v of await this.listVolumes(name)) await this.deleteVolume(name, v);
    await this.virsh(["pool-destroy", name]);
    await this.virsh(["pool-delete", name]);
    await this.virsh(["pool-undefine", name]);
  }

  async listVolumes(pool: string): Promise<string[]> {
    // Console logs are written by QEMU, not through the pool: a refresh makes them volumes too.
    await this.virsh(["pool-refresh", pool]);
    const out = await this.virsh(["vol-list", "--pool", pool]);
    return out
      .split("\n")
      .map((l) => l.trim().split(/\s+/)[0] ?? "")
      .filter(Boolean);
  }

  async createVolume(pool: string, v: VolumeSpec): Promise<string> {
    const args = ["vol-create-as", pool, v.name, `${v.capacityMiB}M`, "--format", v.format];
    if (v.backing) args.push("--backing-vol", v.backing.path, "--backing-vol-format", v.backing.format);
    await this.virsh(args);
    return this.volumePath(pool, v.name);
  }

  async uploadVolume(pool: string, name: string, file: string): Promise<string> {
    const size = (await stat(file)).size;
    if ((await this.listVolumes(pool)).includes(name)) await this.deleteVolume(pool, name);
    // Created raw because vol-upload overwrites every byte anyway; a refresh reads the real format.
    await this.virsh(["vol-create-as", pool, name, `${size}b`, "--format", "raw"]);
    await this.virsh(["vol-upload", "--pool", pool, name, file]);
    return this.volumePath(pool, name);
  }

  async deleteVolume(pool: string, name: string): Promise<void> {
    await this.virsh(["vol-delete", "--pool", pool, name], { allowNotFound: true });
  }

  async volumePath(pool: string, name: string): Promise<string> {
    return (await this.virsh(["vol-path", "--pool", pool, name])).trim();
  }

  async downloadVolume(pool: string, name: string, file: string): Promise<void> {
    await this.virsh(["vol-download", "--pool", pool, name, file]);
  }

  private async virshWithXml(args: string[], xml: string): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), "lab-virsh-"));
    try {
      await writeFile(join(dir, "object.xml"), xml);
      await this.virsh([...args, join(dir, "object.xml")]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async close(): Promise<void> {
    try {
      await this.hv.connectClose();
    } catch {
      // closing a dropped connection: nothing left to release
    }
  }
}
