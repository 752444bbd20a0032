/**
 * SSH sessions to machines (ssh2): exec with exit code, timeouts and cancellation; sudo; SFTP upload
 * verified by sha256 and skipped when the remote file already has that hash. The host key is pinned:
 * a machine's key must match `Machine.ssh.hostKey` (a public key or a SHA256 fingerprint). Only when
 * the caller allows it (the topology's acceptNewHostKey) is an unknown key accepted, and the caller
 * records what was seen.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { Client, type ConnectConfig, type SFTPWrapper } from "ssh2";
import type { Machine } from "../provisioners/provisioner.ts";
import { connectJump, forwardOut, type JumpConnection, type JumpPool } from "./jump.ts";
import { LabError } from "../topology/errors.ts";
import { shq } from "../lib/shell.ts";

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

/** `SHA256:...` of a raw SSH public key blob, as `ssh-keygen -l` prints it. */
export function fingerprintOfBlob(blob: Buffer): string {
  return "SHA256:" + createHash("sha256").update(blob).digest("base64").replace(/=+$/, "");
}

/** The fingerprint a pin stands for: a `SHA256:` string as is, or that of an OpenSSH public key. */
export function pinnedFingerprint(hostKey: string): string | undefined {
  const k = hostKey.trim();
  if (!k) return undefined;
  if (k.startsWith("SHA256:")) return k;
  const blob = k.split(/\s+/)[1];
  return blob ? fingerprintOfBlob(Buffer.from(blob, "base64")) : undefined;
}

/** Single-quotes a string for a POSIX shell (lib/shell.ts; re-exported for the bootstrap steps). */
export { shq };

/** Total size of the files `uploadMany` writes in one exec (base64 on stdin) instead of over SFTP. */
const INLINE_MAX = 1024 * 1024;

interface InlineItem {
  source: { data: Buffer | string };
  remotePath: string;
  mode?: number;
  owner?: string;
}

export const sha256 = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");

export async function sha256OfFile(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest("hex");
}

export class SshSession {
  /** Commands run so far: each is a round trip that costs seconds on a busy TCG guest. */
  execs = 0;

  /** Fingerprint of the host key the server presented. */
  readonly seenHostKey: string;
  private constructor(
    readonly machine: Machine,
    private readonly client: Client,
    seen: string,
    private readonly jump?: JumpConnection,
  ) {
    this.seenHostKey = seen;
  }

  private get where(): string {
    return `${this.machine.name} (${this.machine.ssh.user}@${this.machine.ssh.host}:${this.machine.ssh.port})`;
  }

  static async connect(machine: Machine, opts: ConnectOptions = {}): Promise<SshSession> {
    const m = machine.ssh;
    const where = `${machine.name} (${m.user}@${m.host}:${m.port})`;
    const expected = pinnedFingerprint(m.hostKey);
    let seen = "";
    let privateKey: Buffer;
    try {
      privateKey = await readFile(m.privateKeyPath);
    } catch (err) {
      throw new LabError({
        code: "SSH_KEY_MISSING",
        what: `cannot read SSH private key ${m.privateKeyPath}: ${(err as Error).message}`,
        where: machine.name,
        fix: "set ssh.key in the topology to a readable private key file",
      });
    }
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
      const detail = (r.stderr || r.stdout).trim().split("\n").slice(-5).join(" | ");
      throw new LabError({
        code: "REMOTE_COMMAND_FAILED",
        what: `${opts.what ?? `\`${command.slice(0, 160)}\``} failed on ${this.machine.name} (exit ${r.code}): ${detail}`,
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

  private sftp(): Promise<SFTPWrapper> {
    return new Promise((resolve, reject) => this.client.sftp((err, s) => (err ? reject(err) : resolve(s))));
  }

  /**
   * Puts `data` (or a local file) at `remotePath` as root with `mode`, owned by `owner`. Skips the
   * transfer when the remote file already has the same sha256 (mode and owner are still applied);
   * otherwise uploads to a temporary file, verifies its sha256, then moves it into place atomically.
   */
  async upload(
    source: { data: Buffer | string } | { file: string; sha256?: string },
    remotePath: string,
    opts: { mode?: number; owner?: string; signal?: AbortSignal } = {},
  ): Promise<"uploaded" | "unchanged"> {
    const data = "data" in source ? Buffer.from(source.data) : undefined;
    const want = data
      ? sha256(data)
      : ((source as { sha256?: string }).sha256 ?? (await sha256OfFile((source as { file: string }).file)));
    const mode = (opts.mode ?? 0o644).toString(8);
    const owner = opts.owner ?? "root:root";
    // Large files (the Node runtime, bundles) keep their verified hash in a sidecar: re-hashing
    // 99 MB costs ~40 s per step under TCG. The sidecar is trusted only while size, mtime and
    // inode are the ones recorded right after the verified upload.
    const sidecar = !data;
    const check = await this.run(unchangedCheck(remotePath, want, owner, mode, sidecar), {
      root: true,
      signal: opts.signal,
      timeoutMs: 300_000,
    });
    if (check.trim() === "unchanged") return "unchanged";
    // /var/tmp: disk-backed, where /tmp may be a small tmpfs on a real host.
    const tmp = `/var/tmp/.lab-upload-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
    const sftp = await this.sftp();
    try {
      await new Promise<void>((resolve, reject) => {
        if (!data) {
          // Large files (the ~100 MB Node runtime) stream from disk with parallel SFTP writes.
          sftp.fastPut((source as { file: string }).file, tmp, { mode: 0o600 }, (err) =>
            err ? reject(err) : resolve(),
          );
          return;
        }
        const ws = sftp.createWriteStream(tmp, { mode: 0o600 });
        ws.on("error", reject);
        ws.on("close", () => resolve());
        ws.end(data);
      });
    } finally {
      sftp.end();
    }
    const got = await this.remoteSha256(tmp, false);
    if (got !== want) {
      await this.exec(`rm -f ${shq(tmp)}`);
      throw new LabError({
        code: "UPLOAD_CORRUPT",
        what: `upload to ${this.machine.name}:${remotePath} arrived corrupted (sha256 ${got ?? "none"}, expected ${want})`,
        where: this.machine.name,
        fix: "retry; check the host's disk space and the network",
        source: "host",
      });
    }
    const dir = remotePath.replace(/\/[^/]*$/, "") || "/";
    await this.run(
      `mkdir -p ${shq(dir)} && chown ${shq(owner)} ${shq(tmp)} && chmod ${mode} ${shq(tmp)} && mv -f ${shq(tmp)} ${shq(remotePath + ".lab-new")} && mv -f ${shq(remotePath + ".lab-new")} ${shq(remotePath)}` +
        (sidecar
          ? ` && printf '%s %s\\n' ${want} "$(stat -c '%s %Y %i' ${shq(remotePath)})" > ${shq(remotePath + SHA256_SIDECAR)}`
          : ""),
      {
        root: true,
        signal: opts.signal,
      },
    );
    return "uploaded";
  }

  /**
   * Small files (configuration, certificates, units) in ONE round trip: a script on stdin that, per
   * file, leaves it alone when its sha256 matches (mode and owner still applied), else decodes it
   * beside its destination (umask 077), checks its sha256 and moves it into place. No SFTP session, no second
   * and third exec: each costs seconds on a busy TCG guest.
   */
  private async uploadInline(items: InlineItem[], opts: { signal?: AbortSignal }): Promise<string[]> {
    const script = [
      ...items.map((it, i) => {
        const data = Buffer.from(it.source.data);
        const p = shq(it.remotePath);
        const tmp = shq(`${it.remotePath}.lab-new`);
        const owner = shq(it.owner ?? "root:root");
        const mode = (it.mode ?? 0o644).toString(8);
        const want = sha256(data);
        const dir = shq(it.remotePath.replace(/\/[^/]*$/, "") || "/");
        const b64 = data.toString("base64").replace(/.{1,76}/g, "$&\n");
        return [
          `if [ -f ${p} ] && [ "$(sha256sum ${p} | cut -d' ' -f1)" = ${want} ]; then chown ${owner} ${p} && chmod ${mode} ${p} || exit 1`,
          // umask 077 only for the decode: the file stays unreadable until chmod gives it its mode, while
          // directories made on the way keep the usual 0755 (etcd must traverse /etc/lab/pki)
          `else mkdir -p ${dir} && (umask 077 && base64 -d > ${tmp}) <<'LAB_FILE_${i}' || exit 1`,
          `${b64}LAB_FILE_${i}`,
          `[ "$(sha256sum ${tmp} | cut -d' ' -f1)" = ${want} ] || { echo "corrupt ${i}"; exit 3; }`,
          `chown ${owner} ${tmp} && chmod ${mode} ${tmp} && mv -f ${tmp} ${p} && echo "uploaded ${i}" || exit 1`,
          "fi",
        ].join("\n");
      }),
    ].join("\n");
    const shell = this.machine.ssh.user === "root" ? "sh -s" : "sudo -n sh -s";
    const r = await this.exec(shell, { stdin: script + "\n", signal: opts.signal, timeoutMs: 300_000 });
    const corrupt = /^corrupt (\d+)$/m.exec(r.stdout);
    if (corrupt) {
      throw new LabError({
        code: "UPLOAD_CORRUPT",
        what: `upload to ${this.machine.name} arrived corrupted: ${items[Number(corrupt[1])]!.remotePath}`,
        where: this.machine.name,
        fix: "retry; check the host's disk space",
        source: "host",
      });
    }
    if (r.code !== 0) {
      const detail = (r.stderr || r.stdout).trim().split("\n").slice(-5).join(" | ");
      throw new LabError({
        code: "REMOTE_COMMAND_FAILED",
        what: `writing ${items.length} file(s) failed on ${this.machine.name} (exit ${r.code}): ${detail}`,
        where: this.machine.name,
        source: "host",
      });
    }
    const done = new Set([...r.stdout.matchAll(/^uploaded (\d+)$/gm)].map((m) => Number(m[1])));
    return items.filter((_, i) => done.has(i)).map((it) => it.remotePath);
  }

  /**
   * Like `upload` for many files with a constant number of round trips (one check, one SFTP
   * session, one verify, one move), whatever their number: under TCG every exec costs seconds.
   * Returns the remote paths that were uploaded.
   */
  async uploadMany(
    items: {
      source: { data: Buffer | string } | { file: string; sha256?: string };
      remotePath: string;
      mode?: number;
      owner?: string;
    }[],
    opts: { signal?: AbortSignal } = {},
  ): Promise<string[]> {
    if (!items.length) return [];
    const inline = items.every((it) => "data" in it.source);
    if (
      inline &&
      items.reduce((n, it) => n + Buffer.byteLength((it.source as { data: string | Buffer }).data), 0) <=
        INLINE_MAX
    )
      return this.uploadInline(items as InlineItem[], opts);
    const files = await Promise.all(
      items.map(async (it) => {
        const data = "data" in it.source ? Buffer.from(it.source.data) : undefined;
        const src = it.source as { file: string; sha256?: string };
        const want = data ? sha256(data) : (src.sha256 ?? (await sha256OfFile(src.file)));
        return {
          ...it,
          data,
          want,
          mode: (it.mode ?? 0o644).toString(8),
          owner: it.owner ?? "root:root",
          tmp: `/var/tmp/.lab-upload-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`,
        };
      }),
    );
    const check = files
      .map((f, i) =>
        unchangedCheck(f.remotePath, f.want, f.owner, f.mode, !f.data).replace(
          /echo unchanged/,
          `echo unchanged ${i}`,
        ),
      )
      .join("\n");
    const out = await this.run(check, { root: true, signal: opts.signal, timeoutMs: 300_000 });
    const same = new Set(
      out
        .split("\n")
        .flatMap((l) => (/^unchanged (\d+)$/.exec(l.trim()) ? [Number(l.trim().split(" ")[1])] : [])),
    );
    const todo = files.filter((_, i) => !same.has(i));
    if (!todo.length) return [];
    const sftp = await this.sftp();
    try {
      await Promise.all(
        todo.map(
          (f) =>
            new Promise<void>((resolve, reject) => {
              if (!f.data) {
                sftp.fastPut((f.source as { file: string }).file, f.tmp, { mode: 0o600 }, (err) =>
                  err ? reject(err) : resolve(),
                );
                return;
              }
              const ws = sftp.createWriteStream(f.tmp, { mode: 0o600 });
              ws.on("error", reject);
              ws.on("close", () => resolve());
              ws.end(f.data);
            }),
        ),
      );
    } finally {
      sftp.end();
    }
    const sums = await this.run(`sha256sum ${todo.map((f) => shq(f.tmp)).join(" ")}`, {
      signal: opts.signal,
      timeoutMs: 300_000,
    });
    const got = new Map(
      sums.split("\n").flatMap((l) => {
        const m = /^([0-9a-f]{64})\s+\*?(\S+)$/.exec(l.trim());
        return m ? [[m[2]!, m[1]!] as const] : [];
      }),
    );
    const bad = todo.filter((f) => got.get(f.tmp) !== f.want);
    if (bad.length) {
      await this.exec(`rm -f ${todo.map((f) => shq(f.tmp)).join(" ")}`);
      throw new LabError({
        code: "UPLOAD_CORRUPT",
        what: `upload to ${this.machine.name} arrived corrupted: ${bad.map((f) => `${f.remotePath} (sha256 ${got.get(f.tmp) ?? "none"}, expected ${f.want})`).join(", ")}`,
        where: this.machine.name,
        fix: "retry; check the host's disk space and the network",
        source: "host",
      });
    }
    const move = todo
      .map((f) => {
        const dir = f.remotePath.replace(/\/[^/]*$/, "") || "/";
        const dst = shq(f.remotePath);
        return (
          `mkdir -p ${shq(dir)} && chown ${shq(f.owner)} ${shq(f.tmp)} && chmod ${f.mode} ${shq(f.tmp)} && mv -f ${shq(f.tmp)} ${shq(f.remotePath + ".lab-new")} && mv -f ${shq(f.remotePath + ".lab-new")} ${dst}` +
          (!f.data
            ? ` && printf '%s %s\\n' ${f.want} "$(stat -c '%s %Y %i' ${dst})" > ${shq(f.remotePath + SHA256_SIDECAR)}`
            : "")
        );
      })
      .join(" && ");
    // as long as the other round trips here: a master busy starting its services is slow to fork sudo
    await this.run(move, { root: true, signal: opts.signal, timeoutMs: 300_000 });
    return todo.map((f) => f.remotePath);
  }

  close(): void {
    this.client.end();
    this.jump?.close();
  }
}

/** Suffix of the file that records a large upload's sha256 with the size, mtime and inode it had. */
export const SHA256_SIDECAR = ".lab-sha256";

/**
 * One remote command: prints `unchanged` (after applying owner and mode) when `path` already has
 * sha256 `want`. With `sidecar`, a recorded hash is trusted while `stat` still matches it.
 */
export function unchangedCheck(
  path: string,
  want: string,
  owner: string,
  mode: string,
  sidecar: boolean,
): string {
  const p = shq(path);
  const hash = sidecar
    ? `st=$(stat -c '%s %Y %i' ${p}); if [ -f ${shq(path + SHA256_SIDECAR)} ] && [ "$(cut -d' ' -f2- ${shq(path + SHA256_SIDECAR)})" = "$st" ]; then h=$(cut -d' ' -f1 ${shq(path + SHA256_SIDECAR)}); else h=$(sha256sum ${p} | cut -d' ' -f1); fi`
    : `h=$(sha256sum ${p} | cut -d' ' -f1)`;
  // A file verified by a full hash gets its sidecar now, so the next run skips the hashing.
  const record = sidecar ? ` && printf '%s %s\\n' "$h" "$st" > ${shq(path + SHA256_SIDECAR)}` : "";
  return `if [ -f ${p} ]; then ${hash}; if [ "$h" = ${shq(want)} ]; then chown ${shq(owner)} ${p} && chmod ${mode} ${p}${record} && echo unchanged; fi; fi`;
}
