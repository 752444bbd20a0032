/**
 * SSH through a jump host (a remote hypervisor): the one place that opens an ssh2 connection to the
 * jump host, checks its pinned host key, and forwards a TCP stream from there to a machine. Used by
 * the readiness check and the bootstrap's sessions, so both reach VMs on a remote lab network the
 * same way, and by the libvirt provisioner for the few commands it runs on the hypervisor itself.
 */
import type { Duplex } from "node:stream";
import { Client } from "ssh2";
import { LabError } from "../topology/errors.ts";
import type { SshJump } from "./endpoint.ts";
import { fingerprintOfBlob, keyAlgorithms, pinnedFingerprint, readClientKey } from "./host-key.ts";

/** The `SHA256:` fingerprint a pin stands for; an empty pin stands for no key at all. */
export function jumpFingerprint(hostKey: string): string {
  return pinnedFingerprint(hostKey) ?? fingerprintOfBlob(Buffer.alloc(0));
}

export interface JumpConnection {
  client: Client;
  /** The host key the jump host presented, as an OpenSSH public key (`ssh-ed25519 AAAA...`). */
  hostPublicKey: string;
  close(): void;
}

const where = (j: SshJump) => `${j.user}@${j.host}:${j.port}`;

/** Connects to the jump host, accepting only its pinned host key. */
export async function connectJump(
  jump: SshJump,
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<JumpConnection> {
  const privateKey = await readClientKey(
    jump.privateKeyPath,
    (reason) =>
      new LabError({
        code: "SSH_KEY_MISSING",
        what: `cannot read the SSH key for the hypervisor ${where(jump)}: ${reason}`,
        where: "spec.provider.uri",
        fix: "give a readable key with ?keyfile=PATH in the libvirt URI, or create ~/.ssh/id_ed25519",
      }),
  );
  const expected = jumpFingerprint(jump.hostKey);
  const client = new Client();
  let seen: Buffer | undefined;
  return await new Promise<JumpConnection>((resolve, reject) => {
    const onAbort = () => {
      client.end();
      reject(new LabError({ code: "ABORTED", what: `connecting to ${where(jump)} was cancelled` }));
    };
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    client.once("ready", () => {
      opts.signal?.removeEventListener("abort", onAbort);
      const type = seen!.readUInt32BE(0);
      const keyType = seen!.subarray(4, 4 + type).toString("latin1");
      resolve({
        client,
        hostPublicKey: `${keyType} ${seen!.toString("base64")}`,
        close: () => client.end(),
      });
    });
    client.once("error", (err: Error & { level?: string }) => {
      opts.signal?.removeEventListener("abort", onAbort);
      const seenFp = seen && fingerprintOfBlob(seen);
      reject(
        seenFp && seenFp !== expected
          ? new LabError({
              code: "HOST_KEY_MISMATCH",
              what: `host key of the hypervisor ${where(jump)} does not match: expected ${expected}, seen ${seenFp}`,
              where: "spec.provider",
              fix: "if the hypervisor was reinstalled on purpose, update its known_hosts entry or spec.provider.hostKey; otherwise do not connect",
              source: "host",
            })
          : new LabError({
              code: "SSH_UNREACHABLE",
              what: `cannot connect to the hypervisor ${where(jump)}: ${err.message}`,
              where: "spec.provider.uri",
              fix:
                err.level === "client-authentication"
                  ? `add your public key to ~${jump.user}/.ssh/authorized_keys on the hypervisor`
                  : "check that the hypervisor is up and sshd runs there",
              source: "host",
            }),
      );
    });
    client.connect({
      host: jump.host,
      port: jump.port,
      username: jump.user,
      privateKey,
      readyTimeout: opts.timeoutMs ?? 20_000,
      keepaliveInterval: 10_000,
      // Offer only the pinned key's type when it is known, so the host presents that key.
      ...(keyAlgorithms(jump.hostKey) ? { algorithms: { serverHostKey: keyAlgorithms(jump.hostKey) } } : {}),
      hostVerifier: (key: Buffer) => {
        seen = key;
        return fingerprintOfBlob(key) === expected;
      },
    });
  });
}

/** A TCP stream to host:port opened from the jump host (ssh2 `forwardOut`). */
export function forwardOut(conn: JumpConnection, host: string, port: number): Promise<Duplex> {
  return new Promise((resolve, reject) =>
    conn.client.forwardOut("127.0.0.1", 0, host, port, (err, stream) =>
      err ? reject(err) : resolve(stream),
    ),
  );
}

/** Runs a command on the jump host; resolves with its stdout and exit code. */
export function execOnJump(
  conn: JumpConnection,
  command: string,
  timeoutMs = 30_000,
): Promise<{ stdout: string; code: number }> {
  return new Promise((resolve, reject) => {
    conn.client.exec(command, (err, ch) => {
      if (err) return reject(err);
      const out: Buffer[] = [];
      let code = 255;
      const timer = setTimeout(() => {
        ch.close();
        reject(new Error(`timed out after ${timeoutMs} ms: ${command}`));
      }, timeoutMs);
      ch.on("data", (d: Buffer) => out.push(d));
      ch.stderr.resume();
      ch.on("exit", (c: number | null) => (code = c ?? 255));
      ch.on("close", () => {
        clearTimeout(timer);
        resolve({ stdout: Buffer.concat(out).toString("utf8"), code });
      });
    });
  });
}

/** The identity of a jump host: one connection per user, host, port and pinned key. */
export const jumpKey = (j: SshJump) => `${j.user}@${j.host}:${j.port}#${jumpFingerprint(j.hostKey)}`;

/**
 * One SSH connection per jump host, opened on first use and shared by every session and stream
 * through it (ssh2 multiplexes channels), so a bootstrap logs into the hypervisor once instead
 * of once per node and per API check. A connection that drops is forgotten and reopened on the
 * next use; a failed connect is not cached.
 */
export class JumpPool {
  private readonly open = new Map<string, Promise<JumpConnection>>();
  private closed = false;

  constructor(private readonly opts: { timeoutMs?: number } = {}) {}

  get(jump: SshJump, signal?: AbortSignal): Promise<JumpConnection> {
    if (this.closed)
      return Promise.reject(
        new LabError({ code: "ABORTED", what: `connection to ${where(jump)} requested after close` }),
      );
    const key = jumpKey(jump);
    let c = this.open.get(key);
    if (!c) {
      c = connectJump(jump, { timeoutMs: this.opts.timeoutMs, signal });
      const p = c;
      p.then(
        (conn) => {
          const forget = () => {
            if (this.open.get(key) === p) this.open.delete(key);
          };
          conn.client.once("close", forget);
          conn.client.once("end", forget);
          if (this.closed) conn.close();
        },
        () => {
          if (this.open.get(key) === p) this.open.delete(key);
        },
      );
      this.open.set(key, c);
    }
    return c;
  }

  /** Ends every connection (and with it every stream through them). */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.open.values()];
    this.open.clear();
    for (const c of all) (await c.catch(() => undefined))?.close();
  }
}
