/**
 * How the lab host opens TCP connections to addresses on the lab network (a node, the API VIP):
 * directly when this machine is on that network, or through the SSH jump of the hypervisor that
 * holds it (ssh2 `forwardOut`) when the machines sit behind one. Everything the host sends to the
 * cluster (the bootstrap's /readyz and node checks, `lab tunnel`) dials through this one seam, so
 * the bootstrap never asks where the machines run. Jump connections are shared with the SSH
 * sessions (JumpPool), opened on first use and closed by `close()`.
 */
import { connect as netConnect } from "node:net";
import type { Duplex } from "node:stream";
import type { ClientRequest } from "node:http";
import { request as httpsRequest, type RequestOptions } from "node:https";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import type { SshHost, SshJump } from "./endpoint.ts";
import { forwardOut, JumpPool } from "./jump.ts";
import { LabError } from "../topology/errors.ts";
import { deadlineController } from "../topology/readiness.ts";

/** A machine the dialer reaches: its name and SSH endpoint, its role and its lab address. */
type Machine = SshHost & { role: string; address: string };

export interface DialOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface LabDialer {
  /** A connected TCP stream to host:port on the lab network; a LabError when it cannot be opened. */
  connect(host: string, port: number, opts?: DialOptions): Promise<Duplex>;
  /** The jump host through which `host` is reached; undefined when it is dialled directly. */
  via(host: string): SshJump | undefined;
  /** The pool of jump connections, to share with SSH sessions. */
  readonly jumps: JumpPool;
  /** Closes every jump connection (and every stream through them). */
  close(): Promise<void>;
}

/**
 * Which jump reaches `address` (pure): a machine's own jump for its address; for any other
 * address on the lab network (the VIP), direct if some master is reached directly (this host is
 * on that network), else the first master's jump (the VIP lives on the masters' network).
 */
export function jumpFor(machines: Machine[], address: string): SshJump | undefined {
  const own = machines.find((m) => m.address === address || m.ssh.host === address);
  if (own) return own.ssh.jump;
  const masters = machines.filter((m) => m.role === "master");
  const candidates = masters.length ? masters : machines;
  if (!candidates.length || candidates.some((m) => !m.ssh.jump)) return undefined;
  return candidates[0]!.ssh.jump;
}

/** True when the lab's API endpoint (the VIP) is only reachable through a jump host. */
export function apiBehindJump(machines: Machine[], vip: string): boolean {
  return jumpFor(machines, vip) !== undefined;
}

const jumpName = (j: SshJump) => `${j.user}@${j.host}:${j.port}`;

function withTimeout<T>(
  p: Promise<T>,
  ms: number,
  onLate: (v: T) => void,
  what: () => Error,
  signal?: AbortSignal,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const finish = () => {
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    const timer = setTimeout(() => {
      finish();
      reject(what());
    }, ms);
    const onAbort = () => {
      finish();
      reject(new LabError({ code: "ABORTED", what: "cancelled" }));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        if (done) return onLate(v);
        finish();
        resolve(v);
      },
      (err: unknown) => {
        if (done) return;
        finish();
        reject(err as Error);
      },
    );
  });
}

function dialDirect(host: string, port: number): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host, port });
    s.once("connect", () => {
      s.removeAllListeners("error");
      resolve(s);
    });
    s.once("error", (err) => {
      s.destroy();
      reject(err);
    });
  });
}

/** A dialer for the lab's machines: each address through its jump (if any), the rest directly. */
export function labDialer(machines: Machine[], opts: { jumps?: JumpPool } = {}): LabDialer {
  const jumps = opts.jumps ?? new JumpPool();
  return {
    jumps,
    via: (host) => jumpFor(machines, host),
    async connect(host, port, o = {}) {
      const timeoutMs = o.timeoutMs ?? 10_000;
      const jump = jumpFor(machines, host);
      const target = `${host}:${port}`;
      const unreachable = (reason: string) =>
        new LabError({
          code: "LAB_NETWORK_UNREACHABLE",
          what: jump
            ? `cannot reach ${target} through the hypervisor ${jumpName(jump)}: ${reason}`
            : `cannot reach ${target}: ${reason}`,
          fix: jump
            ? `check that the machine behind ${target} is up (\`lab status\`) and that sshd on ${jump.host} allows TCP forwarding (AllowTcpForwarding yes)`
            : "check that the machine is up (`lab status`) and this host has a route to the lab network",
          source: "host",
        });
      const open = async (): Promise<Duplex> => {
        if (!jump) return dialDirect(host, port);
        const conn = await jumps.get(jump, o.signal);
        return forwardOut(conn, host, port);
      };
      try {
        return await withTimeout(
          open(),
          timeoutMs,
          (late) => late.destroy(),
          () => unreachable(`no connection within ${timeoutMs} ms`),
          o.signal,
        );
      } catch (err) {
        // The jump host's own errors (host key, login) already say what to fix.
        if (err instanceof LabError && err.code !== "SSH_UNREACHABLE") throw err;
        throw unreachable((err as Error).message);
      }
    },
    close: () => jumps.close(),
  };
}

/**
 * A TLS client connection over a dialled stream, verified like https (CA and the address's SAN),
 * resolved once the handshake is done. The deadline (timeoutMs, default 10 s) and the signal cover
 * the dial and the handshake: a peer that accepts TCP and never speaks TLS fails in time.
 */
export async function dialTls(
  dialer: LabDialer,
  host: string,
  port: number,
  tls: { ca: string; cert?: string; key?: string },
  opts: DialOptions = {},
): Promise<TLSSocket> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const started = Date.now();
  const raw = await dialer.connect(host, port, opts);
  const left = Math.max(1, timeoutMs - (Date.now() - started));
  return new Promise<TLSSocket>((resolve, reject) => {
    const s = tlsConnect({ socket: raw, host, ca: tls.ca, cert: tls.cert, key: tls.key });
    const fail = (err: Error) => {
      finish();
      s.destroy();
      raw.destroy();
      reject(err);
    };
    const onAbort = () => fail(new LabError({ code: "ABORTED", what: `TLS to ${host}:${port} cancelled` }));
    const onError = (err: Error) => fail(err);
    const timer = setTimeout(
      () =>
        fail(
          new LabError({
            code: "LAB_NETWORK_UNREACHABLE",
            what: `${host}:${port} accepted the connection but finished no TLS handshake within ${timeoutMs} ms`,
            fix: "the process behind that port is stuck or is not the API server: look at `journalctl -u lab-server` on the machine",
            source: "host",
          }),
        ),
      left,
    );
    const finish = () => {
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      s.off("error", onError);
    };
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    s.once("error", onError);
    s.once("secureConnect", () => {
      finish();
      resolve(s);
    });
  });
}

export interface LabRequestOptions {
  method?: string;
  body?: string;
  /** The whole request's deadline: dial, TLS, sending, the answer and its body. */
  timeoutMs: number;
  signal?: AbortSignal;
}

/**
 * One HTTPS request from the lab host to the cluster with the given client certificate, through
 * `dialer` when given (a jump host) or directly. One deadline spans dial, TLS handshake, request
 * and the whole response body, so a peer that holds the socket open and never answers fails at
 * `timeoutMs` with an error naming the URL. Resolves with any HTTP status; rejects only when no
 * complete answer arrived.
 */
export function labRequest(
  url: string,
  tls: { ca: string; cert: string; key: string },
  opts: LabRequestOptions,
  dialer?: LabDialer,
): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, "");
  const port = Number(u.port || 443);
  const deadline = deadlineController(
    opts.timeoutMs,
    () => `no answer from ${url} within ${opts.timeoutMs} ms`,
    opts.signal,
  );
  const signal = deadline.signal;
  const started = Date.now();
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      deadline.clear();
      signal.removeEventListener("abort", onAbort);
      fn();
    };
    const onAbort = () => {
      const reason = signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason));
      req?.destroy(reason);
      settle(() => reject(reason));
    };
    let req: ClientRequest | undefined = undefined;
    if (signal.aborted) return onAbort();
    // Without an agent, http calls createConnection and waits for its callback (Node ≥ 16).
    const createConnection = dialer
      ? (_o: unknown, done: (err: Error | null, s: Duplex) => void) => {
          const left = Math.max(1, opts.timeoutMs - (Date.now() - started));
          dialTls(dialer, host, port, tls, { timeoutMs: left, signal }).then(
            (s) => done(null, s),
            (err: Error) => done(err, undefined as unknown as Duplex),
          );
          return undefined;
        }
      : undefined;
    const options: RequestOptions = {
      method: opts.method ?? "GET",
      ca: tls.ca,
      cert: tls.cert,
      key: tls.key,
      // A fresh connection per request (no pooled socket to where the VIP was); with a dialer, no
      // agent at all: an agent would open its own connection and bypass createConnection.
      ...(createConnection
        ? { createConnection: createConnection as RequestOptions["createConnection"] }
        : { agent: false }),
    };
    req = httpsRequest(url, options, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", (err) => settle(() => reject(err)));
      res.on("end", () =>
        settle(() => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") })),
      );
    });
    req.on("error", (err) => settle(() => reject(err)));
    signal.addEventListener("abort", onAbort, { once: true });
    req.end(opts.body);
  });
}
