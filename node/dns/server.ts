/**
 * The node-local cluster DNS server: UDP and TCP on one address and port, answering names in the
 * cluster domain from the current Zone (kept fresh by the agent's watches) and, for every other
 * name, forwarding to the node's own resolv.conf nameservers, or REFUSED when it has none (labs
 * are offline). Each node answers alone: no dependency on other nodes.
 */
import { createSocket, type Socket } from "node:dgram";
import { readFile } from "node:fs/promises";
import { createServer, type Server, type Socket as TcpSocket } from "node:net";
import { decide, type Zone } from "./zone.ts";
import {
  canonicalName,
  CLASS_IN,
  decodeHeader,
  decodeMessage,
  encodeMessage,
  encodeWithin,
  RCODE,
  RR,
  type Message,
  type ResourceRecord,
} from "./wire.ts";

export interface Upstream {
  address: string;
  port: number;
}

export interface DnsServerOptions {
  /** The cluster domain, e.g. cluster.local. */
  domain: string;
  address: string;
  port: number;
  /** Where names outside the cluster domain go; none: REFUSED. */
  upstreams?: Upstream[];
  /** Per upstream try. */
  forwardTimeoutMs?: number;
  onError?(err: unknown): void;
}

/** Our largest UDP answer to EDNS clients (the DNS flag day 2020 value). */
const EDNS_PAYLOAD = 1232;
const TCP_IDLE_MS = 10_000;

/** nameserver lines of a resolv.conf (IPv4 only: the forwarder speaks udp4). */
export function parseResolvConf(text: string): Upstream[] {
  const out: Upstream[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*$/.exec(line);
    if (m) out.push({ address: m[1]!, port: 53 });
  }
  return out;
}

/** The node's nameservers, minus our own cluster DNS addresses (forwarding to ourselves would loop). */
export async function upstreamsFrom(path: string, exclude: string[]): Promise<Upstream[]> {
  if (!path) return [];
  const text = await readFile(path, "utf8").catch(() => "");
  return parseResolvConf(text).filter((u) => !exclude.includes(u.address));
}

export class DnsServer {
  private zone: Zone | undefined;
  private udp: Socket | undefined;
  private tcp: Server | undefined;
  private readonly conns = new Set<TcpSocket>();

  constructor(private readonly o: DnsServerOptions) {}

  /** Replaces the zone every answer comes from (the full current set of Services and Endpoints). */
  setZone(zone: Zone): void {
    this.zone = zone;
  }

  async start(): Promise<void> {
    const udp = createSocket({ type: "udp4" });
    udp.on("message", (msg, rinfo) => {
      void this.answer(msg, EDNS_PAYLOAD, true).then(
        (reply) => reply && udp.send(reply, rinfo.port, rinfo.address),
        (err: unknown) => this.o.onError?.(err),
      );
    });
    udp.on("error", (err) => this.o.onError?.(err));
    await new Promise<void>((resolve, reject) => {
      udp.once("error", reject);
      udp.bind(this.o.port, this.o.address, () => {
        udp.off("error", reject);
        resolve();
      });
    });
    this.udp = udp;
    const tcp = createServer((sock) => this.serveTcp(sock));
    await new Promise<void>((resolve, reject) => {
      tcp.once("error", reject);
      tcp.listen(this.o.port, this.o.address, () => {
        tcp.off("error", reject);
        resolve();
      });
    });
    tcp.on("error", (err) => this.o.onError?.(err));
    this.tcp = tcp;
  }

  async stop(): Promise<void> {
    this.udp?.close();
    for (const c of this.conns) c.destroy();
    await new Promise<void>((r) => (this.tcp ? this.tcp.close(() => r()) : r()));
    this.udp = undefined;
    this.tcp = undefined;
  }

  private serveTcp(sock: TcpSocket): void {
    this.conns.add(sock);
    sock.setTimeout(TCP_IDLE_MS, () => sock.destroy());
    sock.on("close", () => this.conns.delete(sock));
    sock.on("error", () => sock.destroy());
    let buf = Buffer.alloc(0);
    // answers go out in query order even when one waits for an upstream
    let queue: Promise<void> = Promise.resolve();
    sock.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const query = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        const reply = this.answer(query, 0xffff, false);
        queue = queue.then(async () => {
          const r = await reply.catch((err: unknown) => {
            this.o.onError?.(err);
            return undefined;
          });
          if (!r || sock.destroyed) return;
          const framed = Buffer.alloc(2 + r.length);
          framed.writeUInt16BE(r.length, 0);
          framed.set(r, 2);
          sock.write(framed);
        });
      }
    });
  }

  /** The reply bytes for one query, or undefined to stay silent (not a query at all). */
  async answer(query: Uint8Array, udpLimit: number, udp: boolean): Promise<Uint8Array | undefined> {
    const header = decodeHeader(query);
    if (!header || header.flags.qr) return undefined;
    const upstreams = this.o.upstreams ?? [];
    const base = (rcode: number, q: Message["questions"] = []): Message => ({
      id: header.id,
      flags: {
        qr: true,
        opcode: header.flags.opcode,
        aa: false,
        tc: false,
        rd: header.flags.rd,
        ra: upstreams.length > 0,
        rcode,
      },
      questions: q,
      answers: [],
      authorities: [],
      additionals: [],
    });
    let msg: Message;
    try {
      msg = decodeMessage(query);
    } catch {
      return encodeMessage(base(RCODE.FORMERR));
    }
    if (header.flags.opcode !== 0) return encodeMessage(base(RCODE.NOTIMP, msg.questions));
    if (msg.questions.length !== 1) return encodeMessage(base(RCODE.FORMERR, msg.questions));
    const q = msg.questions[0]!;
    const opt = msg.additionals.find((r) => r.data.type === RR.OPT);
    // without EDNS a UDP answer must fit 512 bytes; with it, what the client offers (up to ours)
    const limit = udp ? (opt ? Math.max(512, Math.min(opt.class, udpLimit)) : 512) : udpLimit;
    const ourOpt: ResourceRecord[] = opt
      ? [{ name: "", class: EDNS_PAYLOAD, ttl: 0, data: { type: RR.OPT, raw: new Uint8Array() } }]
      : [];

    const decision = this.zone && q.class === CLASS_IN ? decide(this.zone, q.name, q.type) : undefined;
    if (decision?.kind === "answer") {
      return encodeWithin(
        {
          ...base(decision.rcode, [q]),
          flags: { ...base(0).flags, aa: true, rcode: decision.rcode },
          answers: decision.answers,
          authorities: decision.authorities,
          additionals: [...decision.additionals, ...ourOpt],
        },
        limit,
      );
    }
    const name = canonicalName(q.name);
    const domain = canonicalName(this.o.domain);
    if (!this.zone && (name === domain || name.endsWith(`.${domain}`)))
      // no list from the API yet: a cluster name may exist, so no NXDOMAIN that clients would believe
      return encodeMessage({ ...base(RCODE.SERVFAIL, [q]), additionals: ourOpt });
    if (upstreams.length === 0 || q.class !== CLASS_IN)
      return encodeMessage({ ...base(RCODE.REFUSED, [q]), additionals: ourOpt });
    for (const u of upstreams) {
      const reply = await forwardUdp(query, u, this.o.forwardTimeoutMs ?? 2000).catch(() => undefined);
      if (reply && decodeHeader(reply)?.id === header.id) {
        // the upstream may answer bigger than this client may take over UDP
        if (udp && reply.length > limit)
          return encodeMessage({ ...base(RCODE.NOERROR, [q]), flags: { ...base(0).flags, tc: true } });
        return reply;
      }
    }
    return encodeMessage({ ...base(RCODE.SERVFAIL, [q]), additionals: ourOpt });
  }
}

/** One query to one upstream over UDP, from a fresh socket (a fresh source port per query). */
function forwardUdp(query: Uint8Array, u: Upstream, timeoutMs: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const s = createSocket("udp4");
    const done = (err?: Error, reply?: Uint8Array): void => {
      clearTimeout(timer);
      s.close();
      if (reply) resolve(reply);
      else reject(err ?? new Error("no reply"));
    };
    const timer = setTimeout(() => done(new Error(`no answer from ${u.address}:${u.port}`)), timeoutMs);
    s.on("error", (err) => done(err));
    s.on("message", (m, rinfo) => {
      if (rinfo.address === u.address && rinfo.port === u.port) done(undefined, m);
    });
    s.send(query, u.port, u.address);
  });
}
