import * as grpc from "@grpc/grpc-js";

/**
 * etcd's Watch API over one multiplexed gRPC stream per member connection, written for lab-server
 * instead of etcd3's WatchManager: that one threw `Failed to find watcher for IWatchResponse` from
 * inside a gRPC `data` handler when etcd answered for a watch it no longer knew, and the process
 * died. Here:
 *
 * - every watch has a client-chosen `watch_id` (etcd 3.4+), so answers are matched by id, not by
 *   the order of create requests; an answer for an id we do not know is counted and ignored;
 * - a broken stream is opened again (on the next member, with backoff) and every watch resumes at
 *   the revision after the last one it saw: an event or a progress notification;
 * - a watch whose history is gone (`compact_revision`) ends with {@link EtcdWatchCompactedError},
 *   which the store maps to 410 Gone;
 * - progress notifications (`progress_notify`) report the revision a watch is known complete up to;
 * - nothing thrown by a handler reaches a gRPC event handler.
 */

import {
  type EtcdWatchClientOptions,
  type EtcdWatchEvent,
  type EtcdWatchSpec,
  type EtcdWatchHandlers,
  EtcdWatchCompactedError,
  EtcdWatchCanceledError,
  cancelText,
  deserialize,
  guard,
  hostAddress,
  num,
  serialize,
  toKv,
  type RawResponse,
} from "./etcd-watch-wire.ts";

export { EtcdWatchCanceledError, EtcdWatchCompactedError, prefixEnd } from "./etcd-watch-wire.ts";
export type * from "./etcd-watch-wire.ts";

/** One watch as the client keeps it across streams. */
class WatchEntry {
  /** The id on the stream it was last created on; 0 while not created on any. */
  id = 0;
  /** Streams this watch was sent on; undefined while waiting for one. */
  stream: MemberStream | undefined;
  /** When the create went out and no answer came yet. */
  createSentAt = 0;
  done = false;
  constructor(
    readonly spec: { key: Buffer; rangeEnd: Buffer | undefined; prevKv: boolean },
    /** The next revision to deliver: resuming starts here. */
    public nextRevision: number,
    readonly handlers: EtcdWatchHandlers,
  ) {}
}

/** The Watch stream on one member connection. */
class MemberStream {
  readonly watches = new Map<number, WatchEntry>();
  /** Ids we cancelled whose confirmation may still arrive. */
  readonly cancelled = new Set<number>();
  broken = false;
  openedAt = Date.now();
  gotResponse = false;
  constructor(
    readonly member: number,
    readonly call: grpc.ClientDuplexStream<object, RawResponse>,
  ) {}
}

export class EtcdWatchClient {
  private readonly addresses: string[];
  private readonly channelCreds: grpc.ChannelCredentials;
  private readonly clients = new Map<number, grpc.Client>();
  private readonly watches = new Set<WatchEntry>();
  private stream: MemberStream | undefined;
  private member: number;
  private attempts = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  private nextId = 1;
  private closed = false;
  private readonly log: (line: string) => void;
  private readonly backoff: { initialMs: number; maxMs: number };
  private readonly createTimeoutMs: number;
  /** Answers for a watch id this client did not know (tolerated, counted). */
  unknownResponses = 0;
  /** Streams opened so far (the first one included). */
  streamsOpened = 0;

  constructor(private readonly opts: EtcdWatchClientOptions) {
    if (opts.hosts.length === 0) throw new Error("etcd watch client: no etcd member given");
    this.addresses = opts.hosts.map(hostAddress);
    const c = opts.credentials;
    this.channelCreds = c
      ? grpc.credentials.createSsl(c.rootCertificate, c.privateKey ?? null, c.certChain ?? null)
      : grpc.credentials.createInsecure();
    this.member = Math.floor(Math.random() * this.addresses.length);
    this.log = opts.log ?? (() => undefined);
    this.backoff = opts.backoff ?? { initialMs: 100, maxMs: 5_000 };
    this.createTimeoutMs = opts.createTimeoutMs ?? 10_000;
  }

  /** The address of the member the stream is on (or will be opened on). */
  get currentMember(): string {
    return this.addresses[this.member]!;
  }

  get activeWatches(): number {
    return this.watches.size;
  }

  /**
   * Starts a watch; returns the function that cancels it. Cancelling takes effect at once (no
   * handler runs after it) and never waits for etcd.
   */
  watch(spec: EtcdWatchSpec, handlers: EtcdWatchHandlers): () => void {
    if (this.closed) throw new Error("etcd watch client is closed");
    const entry = new WatchEntry(
      {
        key: Buffer.from(spec.key),
        rangeEnd: spec.rangeEnd === undefined ? undefined : Buffer.from(spec.rangeEnd),
        prevKv: spec.prevKv ?? false,
      },
      spec.startRevision,
      handlers,
    );
    this.watches.add(entry);
    const s = this.ensureStream();
    if (s && entry.stream !== s) this.sendCreate(s, entry);
    return () => this.cancel(entry);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.checkTimer);
    for (const w of this.watches) w.done = true;
    this.watches.clear();
    const s = this.stream;
    this.stream = undefined;
    if (s) {
      s.broken = true;
      guard(this.log, "closing the watch stream", () => s.call.cancel());
    }
    for (const c of this.clients.values()) guard(this.log, "closing an etcd connection", () => c.close());
    this.clients.clear();
  }

  private cancel(entry: WatchEntry): void {
    if (entry.done) return;
    entry.done = true;
    this.watches.delete(entry);
    const s = entry.stream;
    if (s && !s.broken && entry.id !== 0) {
      s.watches.delete(entry.id);
      s.cancelled.add(entry.id);
      this.write(s, { cancel_request: { watch_id: entry.id } });
    }
  }

  private client(member: number): grpc.Client {
    let c = this.clients.get(member);
    if (!c) {
      c = new grpc.Client(this.addresses[member]!, this.channelCreds, {
        // as the store's unary client: a silent member's connection closes within 15 s
        "grpc.keepalive_time_ms": 10_000,
        "grpc.keepalive_timeout_ms": 5_000,
        "grpc.max_receive_message_length": 64 * 1024 * 1024,
        ...this.opts.grpcOptions,
      });
      this.clients.set(member, c);
    }
    return c;
  }

  /** The current stream, opened if watches need one and no reconnect is pending. */
  private ensureStream(): MemberStream | undefined {
    if (this.stream && !this.stream.broken) return this.stream;
    if (this.reconnectTimer || this.closed || this.watches.size === 0) return undefined;
    const member = this.member;
    const meta = new grpc.Metadata();
    // etcd ends the stream when this member loses its leader, instead of leaving it silent
    meta.set("hasleader", "true");
    let call: grpc.ClientDuplexStream<object, RawResponse>;
    try {
      call = this.client(member).makeBidiStreamRequest(
        "/etcdserverpb.Watch/Watch",
        serialize,
        deserialize,
        meta,
        {},
      );
    } catch (err) {
      this.scheduleReconnect(`cannot open a watch stream to ${this.addresses[member]}: ${String(err)}`);
      return undefined;
    }
    const s = new MemberStream(member, call);
    this.stream = s;
    this.streamsOpened++;
    call.on("data", (res: RawResponse) => guard(this.log, "a watch response", () => this.onResponse(s, res)));
    call.on("error", (err: Error) =>
      guard(this.log, "a watch stream error", () => this.onBroken(s, err.message)),
    );
    call.on("end", () =>
      guard(this.log, "a watch stream end", () => this.onBroken(s, "etcd ended the watch stream")),
    );
    // a stream error without a listener would be thrown; 'status' only informs
    call.on("status", () => undefined);
    this.checkTimer ??= setInterval(
      () => guard(this.log, "the watch stream check", () => this.checkStuck()),
      1_000,
    );
    this.checkTimer.unref();
    for (const w of this.watches) if (w.stream !== s) this.sendCreate(s, w);
    return s;
  }

  private sendCreate(s: MemberStream, w: WatchEntry): void {
    w.stream = s;
    w.id = this.nextId++;
    w.createSentAt = Date.now();
    s.watches.set(w.id, w);
    this.write(s, {
      create_request: {
        key: w.spec.key,
        ...(w.spec.rangeEnd ? { range_end: w.spec.rangeEnd } : {}),
        start_revision: w.nextRevision,
        progress_notify: true,
        prev_kv: w.spec.prevKv,
        watch_id: w.id,
      },
    });
  }

  private write(s: MemberStream, msg: object): void {
    if (s.broken) return;
    try {
      s.call.write(msg);
    } catch (err) {
      this.onBroken(s, `writing to the watch stream failed: ${(err as Error).message}`);
    }
  }

  private onResponse(s: MemberStream, res: RawResponse): void {
    if (s.broken) return;
    if (!s.gotResponse) {
      s.gotResponse = true;
      this.attempts = 0;
    }
    const id = num(res.watch_id);
    const w = s.watches.get(id);
    if (!w) {
      if (res.created && res.canceled && id === -1) {
        // etcd could not create a watch (it answers id -1): the oldest unanswered create on this stream
        const pending = [...s.watches.values()].find((x) => x.createSentAt > 0);
        if (pending) return this.endWatch(pending, new EtcdWatchCanceledError(cancelText(res)));
      }
      if (s.cancelled.has(id)) {
        // answers for a watch we cancelled, up to etcd's confirmation of the cancel
        if (res.canceled) s.cancelled.delete(id);
        return;
      }
      if (id === -1) return; // a stream-wide progress answer: we never ask for one
      this.unknownResponses++;
      if (this.unknownResponses <= 5 || this.unknownResponses % 1000 === 0)
        this.log(
          `etcd watch: ignored an answer for unknown watch id ${id} from ${this.addresses[s.member]} (${this.unknownResponses} so far)`,
        );
      // a watch etcd runs for nobody: stop it
      if (res.created && !res.canceled && id > 0) {
        s.cancelled.add(id);
        this.write(s, { cancel_request: { watch_id: id } });
      }
      return;
    }
    if (res.created) {
      w.createSentAt = 0;
      if (!res.canceled) {
        // "from now" becomes a concrete revision, so a resume does not skip anything
        if (w.nextRevision === 0) w.nextRevision = num(res.header?.revision) + 1;
        return;
      }
    }
    const compact = num(res.compact_revision);
    if (compact > 0) {
      s.watches.delete(id);
      return this.endWatch(w, new EtcdWatchCompactedError(compact, w.nextRevision));
    }
    if (res.canceled) {
      s.watches.delete(id);
      return this.endWatch(w, new EtcdWatchCanceledError(cancelText(res)));
    }
    const raw = res.events ?? [];
    if (raw.length === 0) {
      const rev = num(res.header?.revision);
      if (rev >= w.nextRevision) {
        w.nextRevision = rev + 1;
        const onProgress = w.handlers.onProgress;
        if (onProgress) guard(this.log, "a watch progress handler", () => onProgress(rev));
      }
      return;
    }
    const events: EtcdWatchEvent[] = [];
    for (const e of raw) {
      const kv = toKv(e.kv);
      if (!kv || kv.modRevision < w.nextRevision) continue; // already delivered before a resume
      events.push({ type: num(e.type) === 1 ? "delete" : "put", kv, prevKv: toKv(e.prev_kv) });
    }
    if (events.length === 0) return;
    w.nextRevision = events[events.length - 1]!.kv.modRevision + 1;
    guard(this.log, "a watch event handler", () => w.handlers.onEvents(events));
  }

  private endWatch(w: WatchEntry, err: Error): void {
    if (w.done) return;
    w.done = true;
    this.watches.delete(w);
    guard(this.log, "a watch error handler", () => w.handlers.onError(err));
  }

  /** A create that stays unanswered means the member does not serve us (stopped, partitioned). */
  private checkStuck(): void {
    const s = this.stream;
    if (!s || s.broken) return;
    const now = Date.now();
    for (const w of s.watches.values()) {
      if (w.createSentAt > 0 && now - w.createSentAt > this.createTimeoutMs) {
        this.onBroken(
          s,
          `${this.addresses[s.member]} did not confirm a watch within ${this.createTimeoutMs / 1000} s`,
        );
        return;
      }
    }
  }

  private onBroken(s: MemberStream, why: string): void {
    if (s.broken) return;
    s.broken = true;
    guard(this.log, "cancelling a broken watch stream", () => s.call.cancel());
    if (this.stream !== s) return;
    this.stream = undefined;
    for (const w of s.watches.values()) {
      w.stream = undefined;
      w.id = 0;
      w.createSentAt = 0;
    }
    if (this.closed || this.watches.size === 0) return;
    this.member = (s.member + 1) % this.addresses.length;
    this.scheduleReconnect(`etcd watch stream to ${this.addresses[s.member]} broke (${why})`);
  }

  private scheduleReconnect(why: string): void {
    if (this.reconnectTimer || this.closed) return;
    const base = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** this.attempts);
    const delay = Math.round(base / 2 + (Math.random() * base) / 2);
    this.attempts = Math.min(this.attempts + 1, 30);
    // every break is told, a long outage once in a while (at most every 5 s anyway)
    if (this.attempts <= 3 || this.attempts % 10 === 0)
      this.log(
        `${why}; resuming ${this.watches.size} watch(es) on ${this.addresses[this.member]} in ${delay} ms (attempt ${this.attempts})`,
      );
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      guard(this.log, "reopening the watch stream", () => this.ensureStream());
    }, delay);
    this.reconnectTimer.unref();
  }
}
