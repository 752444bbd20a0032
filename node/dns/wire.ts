/**
 * The DNS wire format (RFC 1035) for the few record types the cluster DNS speaks: A, AAAA, CNAME,
 * SOA, SRV and the EDNS0 OPT pseudo-record; anything else decodes as raw bytes. Pure functions:
 * decodeMessage follows compression pointers (with a loop guard), encodeMessage compresses names.
 */

export const RR = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, AAAA: 28, SRV: 33, OPT: 41, ANY: 255 } as const;
export const CLASS_IN = 1;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

export interface Flags {
  qr: boolean;
  opcode: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: boolean;
  rcode: number;
}

export interface Question {
  name: string;
  type: number;
  class: number;
}

export type RData =
  | { type: typeof RR.A; address: string }
  | { type: typeof RR.AAAA; address: string }
  | { type: typeof RR.CNAME; target: string }
  | {
      type: typeof RR.SOA;
      mname: string;
      rname: string;
      serial: number;
      refresh: number;
      retry: number;
      expire: number;
      minimum: number;
    }
  | { type: typeof RR.SRV; priority: number; weight: number; port: number; target: string }
  | { type: number; raw: Uint8Array };

/** A resource record; for OPT, `class` is the sender's UDP payload size and `ttl` the extended flags. */
export interface ResourceRecord {
  name: string;
  class: number;
  ttl: number;
  data: RData;
}

export interface Message {
  id: number;
  flags: Flags;
  questions: Question[];
  answers: ResourceRecord[];
  authorities: ResourceRecord[];
  additionals: ResourceRecord[];
}

export class WireError extends Error {}

/** Lower-case, without the trailing dot: the form names are compared in. */
export function canonicalName(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}

// ---------- decoding ----------

class Reader {
  constructor(
    readonly buf: Uint8Array,
    public pos = 0,
  ) {}
  need(n: number): void {
    if (this.pos + n > this.buf.length) throw new WireError("message truncated");
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }
  u16(): number {
    this.need(2);
    const v = (this.buf[this.pos]! << 8) | this.buf[this.pos + 1]!;
    this.pos += 2;
    return v;
  }
  u32(): number {
    return this.u16() * 0x10000 + this.u16();
  }
  bytes(n: number): Uint8Array {
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  name(): string {
    const labels: string[] = [];
    let pos = this.pos;
    let jumped = false;
    let hops = 0;
    let length = 0;
    for (;;) {
      if (pos >= this.buf.length) throw new WireError("name runs past the message");
      const len = this.buf[pos]!;
      if ((len & 0xc0) === 0xc0) {
        if (pos + 1 >= this.buf.length) throw new WireError("name runs past the message");
        if (++hops > 64) throw new WireError("compression pointer loop");
        const target = ((len & 0x3f) << 8) | this.buf[pos + 1]!;
        if (!jumped) this.pos = pos + 2;
        jumped = true;
        pos = target;
        continue;
      }
      if (len & 0xc0) throw new WireError("unsupported label type");
      if (len === 0) {
        if (!jumped) this.pos = pos + 1;
        break;
      }
      if (pos + 1 + len > this.buf.length) throw new WireError("label runs past the message");
      length += len + 1;
      if (length > 255) throw new WireError("name longer than 255 octets");
      labels.push(new TextDecoder().decode(this.buf.subarray(pos + 1, pos + 1 + len)));
      pos += 1 + len;
    }
    return labels.join(".");
  }
}

const ipv4 = (b: Uint8Array): string => [...b].join(".");
function ipv6(b: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return groups.join(":");
}

function readRecord(r: Reader): ResourceRecord {
  const name = r.name();
  const type = r.u16();
  const cls = r.u16();
  const ttl = r.u32();
  const rdlength = r.u16();
  r.need(rdlength);
  const end = r.pos + rdlength;
  let data: RData;
  switch (type) {
    case RR.A:
      if (rdlength !== 4) throw new WireError("A record of wrong length");
      data = { type, address: ipv4(r.bytes(4)) };
      break;
    case RR.AAAA:
      if (rdlength !== 16) throw new WireError("AAAA record of wrong length");
      data = { type, address: ipv6(r.bytes(16)) };
      break;
    case RR.CNAME:
      data = { type, target: r.name() };
      break;
    case RR.SOA:
      data = {
        type,
        mname: r.name(),
        rname: r.name(),
        serial: r.u32(),
        refresh: r.u32(),
        retry: r.u32(),
        expire: r.u32(),
        minimum: r.u32(),
      };
      break;
    case RR.SRV:
      data = { type, priority: r.u16(), weight: r.u16(), port: r.u16(), target: r.name() };
      break;
    default:
      data = { type, raw: r.bytes(rdlength).slice() };
  }
  if (r.pos !== end) throw new WireError(`record data of type ${type} has the wrong length`);
  return { name, class: cls, ttl, data };
}

/** Only the header: enough to answer FORMERR to a message whose body does not parse. */
export function decodeHeader(buf: Uint8Array): { id: number; flags: Flags } | undefined {
  if (buf.length < 12) return undefined;
  const r = new Reader(buf);
  const id = r.u16();
  const f = r.u16();
  return {
    id,
    flags: {
      qr: (f & 0x8000) !== 0,
      opcode: (f >> 11) & 0xf,
      aa: (f & 0x0400) !== 0,
      tc: (f & 0x0200) !== 0,
      rd: (f & 0x0100) !== 0,
      ra: (f & 0x0080) !== 0,
      rcode: f & 0xf,
    },
  };
}

export function decodeMessage(buf: Uint8Array): Message {
  const header = decodeHeader(buf);
  if (!header) throw new WireError("message shorter than its header");
  const r = new Reader(buf, 4);
  const [qd, an, ns, ar] = [r.u16(), r.u16(), r.u16(), r.u16()];
  const questions: Question[] = [];
  for (let i = 0; i < qd; i++) questions.push({ name: r.name(), type: r.u16(), class: r.u16() });
  const records = (n: number): ResourceRecord[] => Array.from({ length: n }, () => readRecord(r));
  const answers = records(an);
  const authorities = records(ns);
  const additionals = records(ar);
  return { ...header, questions, answers, authorities, additionals };
}

// ---------- encoding ----------

class Writer {
  private buf = new Uint8Array(512);
  pos = 0;
  /** Offsets of names already written, by canonical suffix, for compression. */
  private names = new Map<string, number>();
  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    next.set(this.buf);
    this.buf = next;
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v & 0xff;
  }
  u16(v: number): void {
    this.u8(v >> 8);
    this.u8(v);
  }
  u32(v: number): void {
    this.u16(Math.floor(v / 0x10000) & 0xffff);
    this.u16(v & 0xffff);
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  setU16(at: number, v: number): void {
    this.buf[at] = (v >> 8) & 0xff;
    this.buf[at + 1] = v & 0xff;
  }
  name(name: string): void {
    const labels = name.replace(/\.$/, "").split(".").filter(Boolean);
    for (let i = 0; i < labels.length; i++) {
      const suffix = labels.slice(i).join(".").toLowerCase();
      const at = this.names.get(suffix);
      if (at !== undefined) {
        this.u16(0xc000 | at);
        return;
      }
      if (this.pos < 0x4000) this.names.set(suffix, this.pos);
      const label = new TextEncoder().encode(labels[i]);
      if (label.length === 0 || label.length > 63) throw new WireError(`bad label in "${name}"`);
      this.u8(label.length);
      this.bytes(label);
    }
    this.u8(0);
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }
}

function writeIPv4(w: Writer, address: string): void {
  const parts = address.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255))
    throw new WireError(`bad IPv4 address "${address}"`);
  for (const p of parts) w.u8(p);
}

function writeIPv6(w: Writer, address: string): void {
  const [head, tail] = address.includes("::") ? address.split("::") : [address, undefined];
  const h = head ? head.split(":") : [];
  const t = tail !== undefined && tail !== "" ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  if (groups.length !== 8) throw new WireError(`bad IPv6 address "${address}"`);
  for (const g of groups) w.u16(parseInt(g, 16));
}

function writeRecord(w: Writer, rr: ResourceRecord): void {
  w.name(rr.name);
  w.u16(rr.data.type);
  w.u16(rr.class);
  w.u32(rr.ttl);
  const lengthAt = w.pos;
  w.u16(0);
  const start = w.pos;
  const d = rr.data;
  if ("raw" in d) w.bytes(d.raw);
  else if (d.type === RR.A) writeIPv4(w, d.address);
  else if (d.type === RR.AAAA) writeIPv6(w, d.address);
  else if (d.type === RR.CNAME) w.name(d.target);
  else if (d.type === RR.SOA) {
    w.name(d.mname);
    w.name(d.rname);
    for (const v of [d.serial, d.refresh, d.retry, d.expire, d.minimum]) w.u32(v);
  } else if (d.type === RR.SRV) {
    w.u16(d.priority);
    w.u16(d.weight);
    w.u16(d.port);
    w.name(d.target);
  }
  w.setU16(lengthAt, w.pos - start);
}

function flagBits(f: Flags): number {
  return (
    (f.qr ? 0x8000 : 0) |
    ((f.opcode & 0xf) << 11) |
    (f.aa ? 0x0400 : 0) |
    (f.tc ? 0x0200 : 0) |
    (f.rd ? 0x0100 : 0) |
    (f.ra ? 0x0080 : 0) |
    (f.rcode & 0xf)
  );
}

export function encodeMessage(m: Message): Uint8Array {
  const w = new Writer();
  w.u16(m.id);
  w.u16(flagBits(m.flags));
  for (const n of [m.questions.length, m.answers.length, m.authorities.length, m.additionals.length])
    w.u16(n);
  for (const q of m.questions) {
    w.name(q.name);
    w.u16(q.type);
    w.u16(q.class);
  }
  for (const rr of [...m.answers, ...m.authorities, ...m.additionals]) writeRecord(w, rr);
  return w.result();
}

/**
 * Encodes within `limit` bytes (a UDP answer): if the whole message does not fit, the answer
 * keeps only its question and OPT and sets TC, so the client asks again over TCP.
 */
export function encodeWithin(m: Message, limit: number): Uint8Array {
  const full = encodeMessage(m);
  if (full.length <= limit) return full;
  return encodeMessage({
    ...m,
    flags: { ...m.flags, tc: true },
    answers: [],
    authorities: [],
    additionals: m.additionals.filter((r) => r.data.type === RR.OPT),
  });
}
