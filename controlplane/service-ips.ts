import { StoreError, type EtcdStore } from "./storage/etcd-store.ts";

/** Service ClusterIPs from the service CIDR, each claimed by an etcd key so no two services share one. */

export function parseCidr(cidr: string): { base: number; size: number } {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(cidr.trim());
  if (!m) throw new Error(`invalid IPv4 CIDR "${cidr}"`);
  const octets = m.slice(1, 5).map(Number);
  const bits = Number(m[5]);
  if (octets.some((o) => o > 255) || bits < 8 || bits > 30)
    throw new Error(`invalid IPv4 CIDR "${cidr}" (prefix must be /8../30)`);
  const ip = octets.reduce((a, o) => a * 256 + o, 0);
  const size = 2 ** (32 - bits);
  return { base: ip - (ip % size), size };
}

export function ipToString(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
}

export function ipToNumber(ip: string): number | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
  if (!m) return undefined;
  const octets = m.slice(1, 5).map(Number);
  if (octets.some((o) => o > 255)) return undefined;
  return octets.reduce((a, o) => a * 256 + o, 0);
}

const PREFIX = "/registry/ranges/serviceips/";

export class ServiceIpAllocator {
  private readonly base: number;
  private readonly size: number;

  constructor(
    private readonly store: EtcdStore,
    cidr: string,
  ) {
    ({ base: this.base, size: this.size } = parseCidr(cidr));
  }

  /** The first usable address, reserved for the `kubernetes` service. */
  get kubernetesServiceIp(): string {
    return ipToString(this.base + 1);
  }

  /** The tenth address, by convention the cluster DNS (Service kube-system/kube-dns); undefined in tiny ranges. */
  get dnsServiceIp(): string | undefined {
    const ip = ipToString(this.base + 10);
    return this.contains(ip) ? ip : undefined;
  }

  contains(ip: string): boolean {
    const n = ipToNumber(ip);
    return n !== undefined && n > this.base && n < this.base + this.size - 1;
  }

  /** Claims a specific IP; false when another service holds it. */
  async claim(ip: string, owner: string): Promise<boolean> {
    try {
      await this.store.create(PREFIX + ip, { owner });
      return true;
    } catch (err) {
      if (err instanceof StoreError && err.reason === "AlreadyExists") return false;
      throw err;
    }
  }

  /** Claims the first free IP after the reserved ones (`kubernetes`, cluster DNS). */
  async allocate(owner: string): Promise<string> {
    const used = new Set(await this.usedIps());
    const dns = this.dnsServiceIp;
    if (dns) used.add(dns);
    for (let n = this.base + 2; n < this.base + this.size - 1; n++) {
      const ip = ipToString(n);
      if (used.has(ip)) continue;
      if (await this.claim(ip, owner)) return ip;
    }
    throw new Error("the service IP range is full");
  }

  private async usedIps(): Promise<string[]> {
    const keys = await this.store.client.getAll().prefix(PREFIX).keys();
    return keys.map((k) => k.slice(PREFIX.length));
  }

  async release(ip: string): Promise<void> {
    await this.store.delete(PREFIX + ip).catch(() => undefined);
  }
}

const PORT_PREFIX = "/registry/ranges/servicenodeports/";

/** NodePorts (30000-32767 by default), each claimed by an etcd key. */
export class NodePortAllocator {
  constructor(
    private readonly store: EtcdStore,
    private readonly first = 30000,
    private readonly last = 32767,
  ) {}

  contains(port: number): boolean {
    return Number.isInteger(port) && port >= this.first && port <= this.last;
  }

  async claim(port: number, owner: string): Promise<boolean> {
    try {
      await this.store.create(PORT_PREFIX + port, { owner });
      return true;
    } catch (err) {
      if (err instanceof StoreError && err.reason === "AlreadyExists") return false;
      throw err;
    }
  }

  async allocate(owner: string): Promise<number> {
    const keys = await this.store.client.getAll().prefix(PORT_PREFIX).keys();
    const used = new Set(keys.map((k) => Number(k.slice(PORT_PREFIX.length))));
    // Start at a random offset so concurrent apiservers rarely race for the same port.
    const span = this.last - this.first + 1;
    const offset = Math.floor(Math.random() * span);
    for (let i = 0; i < span; i++) {
      const port = this.first + ((offset + i) % span);
      if (!used.has(port) && (await this.claim(port, owner))) return port;
    }
    throw new Error("the NodePort range is full");
  }

  async release(port: number): Promise<void> {
    await this.store.delete(PORT_PREFIX + port).catch(() => undefined);
  }
}
