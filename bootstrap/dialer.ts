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
import { connect as tlsConnect } from "node:tls";
import type { Machine, SshJump } from "../provisioners/provisioner.ts";
import { forwardOut, JumpPool } from "../provisioners/ssh-jump.ts";
import { LabError } from "../topology/errors.ts";

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

/** A TLS client connection over a dialled stream, verified like https (CA and the address's SAN). */
export async function dialTls(
  dialer: LabDialer,
  host: string,
  port: number,
  tls: { ca: string; cert?: string; key?: string },
  opts: DialOptions = {},
): Promise<Duplex> {
  const raw = await dialer.connect(host, port, opts);
  return tlsConnect({ socket: raw, host, ca: tls.ca, cert: tls.cert, key: tls.key });
}
