/** The wire side of the etcd watch client: its public types and errors, and the WatchRequest/WatchResponse codec. */
import type * as grpc from "@grpc/grpc-js";
import protobuf from "protobufjs";
import { ETCD_WATCH_PROTO } from "./etcd-watch-proto.ts";

export interface EtcdWatchCredentials {
  rootCertificate: Buffer;
  privateKey?: Buffer;
  certChain?: Buffer;
}

export interface EtcdWatchClientOptions {
  /** Member client URLs (`https://10.0.0.11:2379`) or host:port. */
  hosts: string[];
  credentials?: EtcdWatchCredentials;
  grpcOptions?: grpc.ChannelOptions;
  /** One line per notable thing (a stream broke, an unknown watch id, a handler threw). */
  log?: (line: string) => void;
  /** Reconnect delays: first retry after initialMs, doubling up to maxMs (with jitter). */
  backoff?: { initialMs: number; maxMs: number };
  /** A create request etcd has not answered within this long means the stream is stuck: move on. */
  createTimeoutMs?: number;
}

export interface EtcdKeyValue {
  key: Buffer;
  value: Buffer;
  modRevision: number;
  createRevision: number;
  version: number;
}

export interface EtcdWatchEvent {
  type: "put" | "delete";
  kv: EtcdKeyValue;
  prevKv: EtcdKeyValue | undefined;
}

export interface EtcdWatchSpec {
  key: string | Buffer;
  /** End of the range (exclusive); see {@link prefixEnd}. Absent: the key alone. */
  rangeEnd?: string | Buffer;
  /** First revision to deliver (inclusive); 0 = from now. */
  startRevision: number;
  prevKv?: boolean;
}

export interface EtcdWatchHandlers {
  /** Events of one or more revisions, in revision order. */
  onEvents(events: EtcdWatchEvent[]): void;
  /** Every event up to this revision has been delivered. */
  onProgress?(revision: number): void;
  /** The watch ended for good (compacted history, or etcd cancelled it); no call follows. */
  onError(err: Error): void;
}

/** The watch's start revision is older than etcd's compacted history. */
export class EtcdWatchCompactedError extends Error {
  constructor(
    readonly compactRevision: number,
    readonly requested: number,
  ) {
    super(`etcd: required revision ${requested} has been compacted (compacted up to ${compactRevision})`);
  }
}

/** etcd cancelled a watch we did not cancel (permission denied, an invalid range...). */
export class EtcdWatchCanceledError extends Error {}

/** The end of the range holding every key that starts with prefix (etcd's `clientv3.GetPrefixRangeEnd`). */
export function prefixEnd(prefix: string | Buffer): Buffer {
  const b = Buffer.from(prefix);
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      const end = Buffer.from(b.subarray(0, i + 1));
      end[i]!++;
      return end;
    }
  }
  return Buffer.from([0]); // every key >= prefix
}

export interface RawKv {
  key?: Uint8Array;
  value?: Uint8Array;
  mod_revision?: number | string;
  create_revision?: number | string;
  version?: number | string;
}
export interface RawResponse {
  header?: { revision?: number | string };
  watch_id?: number | string;
  created?: boolean;
  canceled?: boolean;
  compact_revision?: number | string;
  cancel_reason?: string;
  events?: { type?: number | string; kv?: RawKv; prev_kv?: RawKv }[];
}

let codec: { request: protobuf.Type; response: protobuf.Type } | undefined;
function messages(): { request: protobuf.Type; response: protobuf.Type } {
  if (!codec) {
    const root = protobuf.parse(ETCD_WATCH_PROTO, { keepCase: true }).root;
    codec = {
      request: root.lookupType("etcdserverpb.WatchRequest"),
      response: root.lookupType("etcdserverpb.WatchResponse"),
    };
  }
  return codec;
}

export const serialize = (msg: object): Buffer => {
  const { request } = messages();
  return Buffer.from(request.encode(request.fromObject(msg)).finish());
};
export const deserialize = (buf: Buffer): RawResponse => {
  const { response } = messages();
  return response.toObject(response.decode(buf), { longs: Number, enums: Number }) as RawResponse;
};

export const num = (v: number | string | undefined): number => (v === undefined ? 0 : Number(v));

export function toKv(raw: RawKv | undefined): EtcdKeyValue | undefined {
  if (!raw) return undefined;
  return {
    key: Buffer.from(raw.key ?? []),
    value: Buffer.from(raw.value ?? []),
    modRevision: num(raw.mod_revision),
    createRevision: num(raw.create_revision),
    version: num(raw.version),
  };
}

export function hostAddress(host: string): string {
  const m = /^[a-z]+:\/\/([^/]+)/i.exec(host.trim());
  return m ? m[1]! : host.trim();
}

export function cancelText(res: RawResponse): string {
  return `etcd canceled the watch${res.cancel_reason ? `: ${res.cancel_reason}` : ""}`;
}

/** Runs fn; whatever it throws is logged, never passed on (callers are gRPC event handlers). */
export function guard(log: (line: string) => void, what: string, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    try {
      log(`etcd watch: ${what} threw (ignored): ${err instanceof Error ? err.message : String(err)}`);
    } catch {
      // a logger that throws must not end the process either
    }
  }
}
