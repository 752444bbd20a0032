/**
 * A small SPDY/3.1 client session, enough to drive the container runtime's remote-command
 * endpoint (what kube-apiserver's stream translator does for kubectl's WebSocket exec): open
 * streams with headers, write and half-close them, read their data until FIN. The peer is Go's
 * spdystream (containerd's streaming server), which does not enforce flow control, so no window
 * accounting; PINGs are answered, SETTINGS/WINDOW_UPDATE/HEADERS ignored.
 *
 * Frames (all big-endian): control = 1 bit C=1, 15 bits version (3), 16 bits type, 8 bits flags,
 * 24 bits length, payload; data = 1 bit C=0, 31 bits stream id, 8 bits flags, 24 bits length,
 * payload. Header blocks are zlib-compressed on one stream per direction; ours is written without a
 * preset dictionary (allowed: the dictionary is only used when the zlib header asks for it), and the
 * peer's are never needed, so they are skipped undecoded.
 */
import type { Duplex } from "node:stream";
import { constants, createDeflate } from "node:zlib";

const VERSION = 3;
const SYN_STREAM = 1;
const RST_STREAM = 3;
const PING = 6;
const FLAG_FIN = 0x01;

export interface StreamHandlers {
  data?: (d: Buffer) => void;
  /** The peer finished (FIN), reset the stream, or the connection ended. Called once. */
  end?: () => void;
}

/** The uncompressed name/value block of SYN_STREAM. Pure. */
export function headerBlock(headers: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  const n = Buffer.alloc(4);
  n.writeUInt32BE(Object.keys(headers).length);
  parts.push(n);
  for (const [k, v] of Object.entries(headers)) {
    for (const s of [k.toLowerCase(), v]) {
      const b = Buffer.from(s);
      const len = Buffer.alloc(4);
      len.writeUInt32BE(b.length);
      parts.push(len, b);
    }
  }
  return Buffer.concat(parts);
}

export function controlFrame(type: number, flags: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(0x8000 | VERSION, 0);
  h.writeUInt16BE(type, 2);
  h.writeUInt8(flags & 0xff, 4);
  h.writeUIntBE(payload.length, 5, 3);
  return Buffer.concat([h, payload]);
}

export function dataFrame(id: number, flags: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(id & 0x7fffffff, 0);
  h.writeUInt8(flags & 0xff, 4);
  h.writeUIntBE(payload.length, 5, 3);
  return Buffer.concat([h, payload]);
}

export interface Frame {
  control: boolean;
  /** Control frames: the type. */
  type: number;
  /** Data frames (and SYN/RST control frames): the stream. */
  id: number;
  flags: number;
  payload: Buffer;
  raw: Buffer;
}

/** Splits complete frames off the front of `buf`; returns them and the unconsumed rest. Pure. */
export function parseFrames(buf: Buffer): { frames: Frame[]; rest: Buffer } {
  const frames: Frame[] = [];
  let off = 0;
  while (buf.length - off >= 8) {
    const len = buf.readUInt32BE(off + 4) & 0xffffff;
    if (buf.length - off < 8 + len) break;
    const raw = buf.subarray(off, off + 8 + len);
    const payload = raw.subarray(8);
    const control = (raw[0]! & 0x80) !== 0;
    const type = control ? raw.readUInt16BE(2) : 0;
    const id = control
      ? payload.length >= 4 && type !== PING
        ? payload.readUInt32BE(0) & 0x7fffffff
        : 0
      : raw.readUInt32BE(0) & 0x7fffffff;
    frames.push({ control, type, id, flags: raw[4]!, payload, raw });
    off += 8 + len;
  }
  return { frames, rest: buf.subarray(off) };
}

export class SpdyClientSession {
  private nextId = 1;
  private readonly deflate = createDeflate();
  /** Every write goes through this chain, so a stream's SYN (compressed asynchronously) precedes its data. */
  private chain: Promise<void> = Promise.resolve();
  private pending = Buffer.alloc(0);
  private readonly streams = new Map<number, StreamHandlers>();
  private closed = false;
  private readonly onCloseCbs: (() => void)[] = [];

  constructor(
    private readonly socket: Duplex,
    head: Buffer,
  ) {
    this.deflate.on("error", () => this.close());
    socket.on("data", (d: Buffer) => this.feed(d));
    const done = (): void => this.shutdown();
    socket.on("close", done);
    socket.on("error", done);
    if (head.length) this.feed(head);
  }

  /** Opens a stream; its SYN_STREAM is queued ahead of anything written to it. */
  open(headers: Record<string, string>, handlers: StreamHandlers = {}): number {
    const id = this.nextId;
    this.nextId += 2;
    this.streams.set(id, handlers);
    const block = headerBlock(headers);
    this.enqueue(async () => {
      const compressed = await this.compress(block);
      const p = Buffer.alloc(10);
      p.writeUInt32BE(id, 0);
      p.writeUInt32BE(0, 4);
      p.writeUInt16BE(0, 8); // priority 0, slot 0
      return controlFrame(SYN_STREAM, 0, Buffer.concat([p, compressed]));
    });
    return id;
  }

  write(id: number, data: Buffer): void {
    if (data.length) this.enqueue(async () => dataFrame(id, 0, data));
  }

  /** Half-closes our side of the stream (the peer reads EOF). */
  finish(id: number): void {
    this.enqueue(async () => dataFrame(id, FLAG_FIN, Buffer.alloc(0)));
  }

  onClose(cb: () => void): void {
    if (this.closed) cb();
    else this.onCloseCbs.push(cb);
  }

  close(): void {
    this.socket.destroy();
    this.shutdown();
  }

  private enqueue(make: () => Promise<Buffer>): void {
    this.chain = this.chain
      .then(async () => {
        const frame = await make();
        if (!this.closed) this.socket.write(frame);
      })
      .catch(() => this.close());
  }

  private compress(block: Buffer): Promise<Buffer> {
    if (this.closed) return Promise.resolve(Buffer.alloc(0)); // nothing is written once closed
    return new Promise((resolve) => {
      const out: Buffer[] = [];
      const onData = (d: Buffer): void => {
        out.push(d);
      };
      this.deflate.on("data", onData);
      this.deflate.write(block);
      this.deflate.flush(constants.Z_SYNC_FLUSH, () => {
        this.deflate.off("data", onData);
        resolve(Buffer.concat(out));
      });
    });
  }

  private feed(d: Buffer): void {
    const { frames, rest } = parseFrames(this.pending.length ? Buffer.concat([this.pending, d]) : d);
    this.pending = Buffer.from(rest);
    for (const f of frames) {
      if (!f.control) {
        const s = this.streams.get(f.id);
        if (f.payload.length) s?.data?.(f.payload);
        if (f.flags & FLAG_FIN) this.endStream(f.id);
      } else if (f.type === RST_STREAM) {
        this.endStream(f.id);
      } else if (f.type === PING) {
        this.enqueue(async () => Buffer.from(f.raw));
      } else if (f.flags & FLAG_FIN && f.type === 2) {
        this.endStream(f.id); // SYN_REPLY with FIN: nothing will follow on it
      }
    }
  }

  private endStream(id: number): void {
    const s = this.streams.get(id);
    if (!s) return;
    this.streams.delete(id);
    s.end?.();
  }

  private shutdown(): void {
    if (this.closed) return;
    this.closed = true;
    for (const id of [...this.streams.keys()]) this.endStream(id);
    this.deflate.close();
    for (const cb of this.onCloseCbs) cb();
  }
}

/** What a remote-command session carries (the runtime expects exactly these streams). */
export interface RemoteCommandIo {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}
