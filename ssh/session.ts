/**
 * SSH sessions to machines (ssh2): exec with exit code, timeouts and cancellation; sudo; uploads
 * verified by sha256 (ssh/upload.ts). The host key is pinned: a machine's key must match
 * `ssh.hostKey` (a public key or a SHA256 fingerprint). Only when
 * the caller allows it (the topology's acceptNewHostKey) is an unknown key accepted, and the caller
 * records what was seen.
 */
import { Client, type ConnectConfig, type SFTPWrapper } from "ssh2";
import { shq } from "../lib/shell.ts";
import { LabError } from "../topology/errors.ts";
import type { SshHost } from "./endpoint.ts";
import { fingerprintOfBlob, pinnedFingerprint, readClientKey } from "./host-key.ts";
import { connectJump, forwardOut, type JumpConnection, type JumpPool } from "./jump.ts";
import { failureDetail, upload, uploadMany, type UploadItem, type UploadSource } from "./upload.ts";

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface ExecOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Written to the command's stdin, then closed. */
  stdin?: string | Buffer;
}

export interface ConnectOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Accept a host key when none is pinned (topology acceptNewHostKey); never overrides a pin. */
  acceptNewHostKey?: boolean;
  /** Share the jump host's connection with other sessions (it outlives this session). */
  jumps?: JumpPool;
}

/** Single-quotes a string for a POSIX shell (lib/shell.ts; re-exported for the bootstrap steps). */
export { shq };

export class SshSession {
  /** Commands run so far: each is a round trip that costs seconds on a busy TCG guest. */
  execs = 0;

  /** Fingerprint of the host key the server presented. */
  readonly seenHostKey: string;
  private constructor(
    readonly machine: SshHost,
    private readonly client: Client,
    seen: string,
    private readonly jump?: JumpConnection,
  ) {
    this.seenHostKey = seen;
  }

  private get where(): string {
    return `${this.machine.name} (${this.machine.ssh.user}@${this.machine.ssh.host}:${this.machine.ssh.port})`;
  }

  static async connect<M extends SshHost>(machine: M, opts: ConnectOptions = {}): Promise<SshSession> {
    const m = machine.ssh;
    const where = `${machine.name} (${m.user}@${m.host}:${m.port})`;
    const expected = pinnedFingerprint(m.hostKey);
    let seen = "";
    const privateKey = await readClientKey(
      m.privateKeyPath,
      (reason) =>
        new LabError({
          code: "SSH_KEY_MISSING",
          what: `cannot read SSH private key ${m.privateKeyPath}: ${reason}`,
          where: machine.name,
          fix: "set ssh.key in the topology to a readable private key file",
        }),
    );
    // A machine on a remote hypervisor's lab network: tunnel through the hypervisor (pinned too).
    let jump: JumpConnection | undefined;
    let sock: ConnectConfig["sock"];
    if (m.jump) {
      const shared = opts.jumps ? await opts.jumps.get(m.jump, opts.signal) : undefined;
      const j = shared ?? (await connectJump(m.jump, { timeoutMs: opts.timeoutMs, signal: opts.signal }));
      // A shared connection belongs to the pool: this session closes only its own.
      jump = shared ? undefined : j;
      try {
        sock = await forwardOut(j, m.host, m.port);
      } catch (err) {
        jump?.close();
        throw new LabError({
          code: "SSH_UNREACHABLE",
          what: `cannot reach ${where} through ${m.jump.host}: ${(err as Error).message}`,
          where: machine.name,
          fix: "check that the machine is up and its lab network exists on the hypervisor",
          source: "host",
        });
      }
    }
    const client = new Client();
    const config: ConnectConfig = {
      ...(sock ? { sock } : {}),
      host: m.host,
      port: m.port,
      username: m.user,
      privateKey,
      readyTimeout: opts.timeoutMs ?? 20_000,
      keepaliveInterval: 10_000,
      hostVerifier: (key: Buffer) => {
        seen = fingerprintOfBlob(key);
        if (expected) return seen === expected;
        return opts.acceptNewHostKey === true;
      },
    };
    return await new Promise<SshSession>((resolve, reject) => {
      const onAbort = () => {
        client.on("error", () => undefined);
        client.destroy();
        jump?.close();
        reject(
          new LabError({ code: "ABORTED", what: `connecting to ${where} was cancelled`, source: "user" }),
        );
      };
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      client.once("ready", () => {
        opts.signal?.removeEventListener("abort", onAbort);
        resolve(new SshSession(machine, client, seen, jump));
      });
      // `on`, not `once`: a connection that failed (its handshake timed out) can still report the
      // peer closing it later, and an unheard "error" would end the process.
      let failed = false;
      client.on("error", (err: Error & { level?: string }) => {
        if (failed) return;
        failed = true;
        opts.signal?.removeEventListener("abort", onAbort);
        client.destroy();
        jump?.close();
        if (seen && expected && seen !== expected) {
          reject(
            new LabError({
              code: "HOST_KEY_MISMATCH",
              what: `host key of ${where} does not match: expected ${expected}, seen ${seen}`,
              where: machine.name,
              fix: "if the host was reinstalled on purpose, update ssh.hostKey in the topology; otherwise do not connect (someone may be intercepting)",
              source: "host",
            }),
          );
        } else if (seen && !expected) {
          reject(
            new LabError({
              code: "HOST_KEY_UNKNOWN",
              what: `host key of ${where} is not pinned (seen ${seen})`,
              where: machine.name,
              fix: "check the fingerprint on the host (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) and set ssh.hostKey, or set ssh.acceptNewHostKey: true",
              source: "user",
            }),
          );
        } else {
          reject(
            new LabError({
              code: "SSH_UNREACHABLE",
              what: `cannot connect to ${where}: ${err.message}`,
              where: machine.name,
              fix:
                err.level === "client-authentication"
                  ? `add the lab's public key to ~${m.user}/.ssh/authorized_keys on the host`
                  : "check that the host is up, the address and port are right and sshd is running",
              source: "host",
            }),
          );
        }
      });
      client.connect(config);
    });
  }

  /** Runs a command; resolves with its output and exit code (never throws for a non-zero exit). */
  exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    this.execs++;
    const timeoutMs = opts.timeoutMs ?? 120_000;
    return new Promise<ExecResult>((resolve, reject) => {
      if (opts.signal?.aborted) {
        reject(new LabError({ code: "ABORTED", what: `cancelled before running on ${this.where}` }));
        return;
      }
      // sshd does not end a pty-less command when its channel closes: the remote `timeout` does.
      const wrapped = `timeout -k 2 ${Math.ceil(timeoutMs / 1000) + 1} sh -c ${shq(command)}`;
      this.client.exec(wrapped, (err, channel) => {
        if (err) {
          reject(
            new LabError({
              code: "SSH_EXEC",
              what: `cannot run a command on ${this.where}: ${err.message}`,
              source: "host",
            }),
          );
          return;
        }
        const out: Buffer[] = [];
        const errOut: Buffer[] = [];
        let settled = false;
        const finish = (fn: () => void) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          opts.signal?.removeEventListener("abort", onAbort);
          fn();
        };
        const stop = (what: string, code: string) => {
          // Closing the channel hangs up the remote command (SIGHUP with a pty-less session).
          channel.signal?.("KILL");
          channel.close();
          finish(() =>
            reject(
              new LabError({
                code,
                what: `${what} on ${this.where}: ${command.slice(0, 120)}`,
                source: "host",
              }),
            ),
          );
        };
        const onAbort = () => stop("cancelled", "ABORTED");
        const timer = setTimeout(() => stop(`timed out after ${timeoutMs} ms`, "SSH_TIMEOUT"), timeoutMs);
        opts.signal?.addEventListener("abort", onAbort, { once: true });
        channel.on("data", (d: Buffer) => out.push(d));
        channel.stderr.on("data", (d: Buffer) => errOut.push(d));
        let exitCode = 255;
        channel.on("exit", (code: number | null, signalName?: string) => {
          exitCode = code ?? (signalName ? 128 : 255);
        });
        channel.on("close", () =>
          finish(() =>
            resolve({
              stdout: Buffer.concat(out).toString("utf8"),
              stderr: Buffer.concat(errOut).toString("utf8"),
              code: exitCode,
            }),
          ),
        );
        if (opts.stdin !== undefined) channel.end(opts.stdin);
        else channel.end();
      });
    });
  }

  /** Wraps a shell command so it runs as root (`sudo -n`, never prompting) unless already root. */
  asRoot(command: string): string {
    return this.machine.ssh.user === "root" ? `sh -c ${shq(command)}` : `sudo -n sh -c ${shq(command)}`;
  }

  sudo(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    return this.exec(this.asRoot(command), opts);
  }

  /** Like exec/sudo, but a non-zero exit becomes a LabError that shows stderr. */
  async run(command: string, opts: ExecOptions & { root?: boolean; what?: string } = {}): Promise<string> {
    const r = await (opts.root ? this.sudo(command, opts) : this.exec(command, opts));
    if (r.code !== 0) {
      throw new LabError({
        code: "REMOTE_COMMAND_FAILED",
        what: `${opts.what ?? `\`${command.slice(0, 160)}\``} failed on ${this.machine.name} (exit ${r.code}): ${failureDetail(r)}`,
        where: this.machine.name,
        source: "host",
      });
    }
    return r.stdout;
  }

  /** sha256 of a remote file, or undefined when it does not exist. */
  async remoteSha256(path: string, root = true): Promise<string | undefined> {
    const cmd = `if [ -f ${shq(path)} ]; then sha256sum ${shq(path)}; fi`;
    const out = await this.run(cmd, { root });
    return /^([0-9a-f]{64})\s/.exec(out)?.[1];
  }

  /** An SFTP channel on this connection (uploads use it; the caller ends it). */
  openSftp(): Promise<SFTPWrapper> {
    return new Promise((resolve, reject) => this.client.sftp((err, s) => (err ? reject(err) : resolve(s))));
  }

  /** `upload` in ssh/upload.ts: one file, verified by sha256, skipped when already there. */
  upload(
    source: UploadSource,
    remotePath: string,
    opts: { mode?: number; owner?: string; signal?: AbortSignal } = {},
  ): Promise<"uploaded" | "unchanged"> {
    return upload(this, { source, remotePath, mode: opts.mode, owner: opts.owner }, opts);
  }

  /** `uploadMany` in ssh/upload.ts: many files in a constant number of round trips. */
  uploadMany(items: UploadItem[], opts: { signal?: AbortSignal } = {}): Promise<string[]> {
    return uploadMany(this, items, opts);
  }

  close(): void {
    this.client.end();
    this.jump?.close();
  }
}
