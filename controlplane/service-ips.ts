import { cidrRange, formatIPv4, ipv4ToNumber } from "../lib/ipv4.ts";
import { IntRange } from "../lib/range.ts";
import { StoreError, type EtcdStore } from "./storage/etcd-store.ts";

/**
 * Members of a range claimed one by one, each by an etcd key under `prefix`, so no two owners
 * share one even across API servers.
 */
class EtcdRangeClaims {
  constructor(
    private readonly store: EtcdStore,
    private readonly prefix: string,
  ) {}

  /** Claims a member; false when another owner holds it. */
  async claim(member: string, owner: string): Promise<boolean> {
    try {
      await this.store.create(this.prefix + member, { owner });
      return true;
    } catch (err) {
      if (err instanceof StoreError && err.reason === "AlreadyExists") return false;
      throw err;
    }
  }

  async claimed(): Promise<string[]> {
    const keys = await this.store.client.getAll().prefix(this.prefix).keys();
    return keys.map((k) => k.slice(this.prefix.length));
  }

  /** Claims the first free member of `candidates`; undefined when every one is taken. */
  async claimFirst(candidates: Iterable<string>, owner: string): Promise<string | undefined> {
    for (const member of candidates) if (await this.claim(member, owner)) return member;
    return undefined;
  }

  async release(member: string): Promise<void> {
    await this.store.delete(this.prefix + member).catch(() => undefined);
  }
}

function* map<T, U>(it: Iterable<T>, f: (t: T) => U): Generator<U> {
  for (const t of it) yield f(t);
}

/** Service ClusterIPs from the service CIDR, each claimed by an etcd key so no two services share one. */
export class ServiceIpAllocator {
  private readonly base: number;
  private readonly claims: EtcdRangeClaims;
  /** The host addresses (network and broadcast aside). */
  private readonly hosts: IntRange;

  constructor(store: EtcdStore, cidr: string) {
    const c = cidrRange(cidr.trim());
    if (!c) {
      const shaped = /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(cidr.trim());
      throw new Error(`invalid IPv4 CIDR "${cidr}"${shaped ? " (prefix must be /8../30)" : ""}`);
    }
    this.base = c.base;
    this.hosts = new IntRange(c.base + 1, c.base + c.size - 2);
    this.claims = new EtcdRangeClaims(store, "/registry/ranges/serviceips/");
  }

  /** The first usable address, reserved for the `kubernetes` service. */
  get kubernetesServiceIp(): string {
    return formatIPv4(this.base + 1);
  }

  /** The tenth address, by convention the cluster DNS (Service kube-system/kube-dns); undefined in tiny ranges. */
  get dnsServiceIp(): string | undefined {
    const ip = formatIPv4(this.base + 10);
    return this.contains(ip) ? ip : undefined;
  }

  contains(ip: string): boolean {
    const n = ipv4ToNumber(ip);
    return n !== undefined && this.hosts.contains(n);
  }

  /** Claims a specific IP; false when another service holds it. */
  claim(ip: string, owner: string): Promise<boolean> {
    return this.claims.claim(ip, owner);
  }

  /** Claims the first free IP after the reserved ones (`kubernetes`, cluster DNS). */
  async allocate(owner: string): Promise<string> {
    const used = new Set([this.base + 1]);
    for (const ip of [...(await this.claims.claimed()), this.dnsServiceIp ?? ""]) {
      const n = ipv4ToNumber(ip);
      if (n !== undefined) used.add(n);
    }
    const ip = await this.claims.claimFirst(map(this.hosts.free(used), formatIPv4), owner);
    if (ip === undefined) throw new Error("the service IP range is full");
    return ip;
  }

  release(ip: string): Promise<void> {
    return this.claims.release(ip);
  }
}

/** NodePorts (30000-32767 by default), each claimed by an etcd key. */
export class NodePortAllocator {
  private readonly ports: IntRange;
  private readonly claims: EtcdRangeClaims;

  constructor(store: EtcdStore, first = 30000, last = 32767) {
    this.ports = new IntRange(first, last);
    this.claims = new EtcdRangeClaims(store, "/registry/ranges/servicenodeports/");
  }

  contains(port: number): boolean {
    return this.ports.contains(port);
  }

  claim(port: number, owner: string): Promise<boolean> {
    return this.claims.claim(String(port), owner);
  }

  async allocate(owner: string): Promise<number> {
    const used = new Set((await this.claims.claimed()).map(Number));
    // Start at a random offset so concurrent apiservers rarely race for the same port.
    const offset = Math.floor(Math.random() * this.ports.size);
    const port = await this.claims.claimFirst(map(this.ports.free(used, offset), String), owner);
    if (port === undefined) throw new Error("the NodePort range is full");
    return Number(port);
  }

  release(port: number): Promise<void> {
    return this.claims.release(String(port));
  }
}
