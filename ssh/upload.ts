/**
 * Uploads over an SSH session, as root with mode and owner, verified by sha256 and skipped when the
 * remote file already has that hash. Small files go in one exec (base64 on stdin); large ones over
 * SFTP to a temporary file that is verified, then moved into place atomically. Every exec costs
 * seconds on a busy TCG guest, so the number of round trips stays constant whatever the number of
 * files.
 */
import type { SFTPWrapper } from "ssh2";
import { sha256, sha256OfFile } from "../lib/digest.ts";
import { shq } from "../lib/shell.ts";
import { LabError } from "../topology/errors.ts";
import type { SshSession } from "./session.ts";

export type UploadSource = { data: Buffer | string } | { file: string; sha256?: string };

export interface UploadItem {
  source: UploadSource;
  remotePath: string;
  mode?: number;
  owner?: string;
}

/** Suffix of the file that records a large upload's sha256 with the size, mtime and inode it had. */
export const SHA256_SIDECAR = ".lab-sha256";

/** Total size of the files `uploadMany` writes in one exec (base64 on stdin) instead of over SFTP. */
const INLINE_MAX = 1024 * 1024;

const dirOf = (path: string) => path.replace(/\/[^/]*$/, "") || "/";

/** The last lines of a failed command's output, for its error. */
export const failureDetail = (r: { stdout: string; stderr: string }) =>
  (r.stderr || r.stdout).trim().split("\n").slice(-5).join(" | ");

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

/**
 * Puts `source` (data or a local file) at `remotePath` as root with `mode`, owned by `owner`. Skips
 * the transfer when the remote file already has the same sha256 (mode and owner are still applied);
 * otherwise uploads to a temporary file, verifies its sha256, then moves it into place atomically.
 */
export async function upload(
  s: SshSession,
  item: UploadItem,
  opts: { signal?: AbortSignal } = {},
): Promise<"uploaded" | "unchanged"> {
  return (await uploadOverSftp(s, [item], opts)).length ? "uploaded" : "unchanged";
}

/**
 * Like `upload` for many files with a constant number of round trips (one exec for small data,
 * else one check, one SFTP session, one verify, one move), whatever their number.
 * Returns the remote paths that were uploaded.
 */
export async function uploadMany(
  s: SshSession,
  items: UploadItem[],
  opts: { signal?: AbortSignal } = {},
): Promise<string[]> {
  if (!items.length) return [];
  const inline = items.every((it) => "data" in it.source);
  if (
    inline &&
    items.reduce((n, it) => n + Buffer.byteLength((it.source as { data: string | Buffer }).data), 0) <=
      INLINE_MAX
  )
    return uploadInline(s, items, opts);
  return uploadOverSftp(s, items, opts);
}

/**
 * Small files (configuration, certificates, units) in ONE round trip: a script on stdin that, per
 * file, leaves it alone when its sha256 matches (mode and owner still applied), else decodes it
 * beside its destination (umask 077), checks its sha256 and moves it into place. No SFTP session, no second
 * and third exec: each costs seconds on a busy TCG guest.
 */
async function uploadInline(
  s: SshSession,
  items: UploadItem[],
  opts: { signal?: AbortSignal },
): Promise<string[]> {
  const script = [
    ...items.map((it, i) => {
      const data = Buffer.from((it.source as { data: Buffer | string }).data);
      const p = shq(it.remotePath);
      const tmp = shq(`${it.remotePath}.lab-new`);
      const owner = shq(it.owner ?? "root:root");
      const mode = (it.mode ?? 0o644).toString(8);
      const want = sha256(data);
      const dir = shq(dirOf(it.remotePath));
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
  const shell = s.machine.ssh.user === "root" ? "sh -s" : "sudo -n sh -s";
  const r = await s.exec(shell, { stdin: script + "\n", signal: opts.signal, timeoutMs: 300_000 });
  const corrupt = /^corrupt (\d+)$/m.exec(r.stdout);
  if (corrupt) {
    throw new LabError({
      code: "UPLOAD_CORRUPT",
      what: `upload to ${s.machine.name} arrived corrupted: ${items[Number(corrupt[1])]!.remotePath}`,
      where: s.machine.name,
      fix: "retry; check the host's disk space",
      source: "host",
    });
  }
  if (r.code !== 0) {
    throw new LabError({
      code: "REMOTE_COMMAND_FAILED",
      what: `writing ${items.length} file(s) failed on ${s.machine.name} (exit ${r.code}): ${failureDetail(r)}`,
      where: s.machine.name,
      source: "host",
    });
  }
  const done = new Set([...r.stdout.matchAll(/^uploaded (\d+)$/gm)].map((m) => Number(m[1])));
  return items.filter((_, i) => done.has(i)).map((it) => it.remotePath);
}

/** Streams one file to `tmp` (mode 0600 until it is verified). */
function put(sftp: SFTPWrapper, source: UploadSource, tmp: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (!("data" in source)) {
      // Large files (the ~100 MB Node runtime) stream from disk with parallel SFTP writes.
      sftp.fastPut(source.file, tmp, { mode: 0o600 }, (err) => (err ? reject(err) : resolve()));
      return;
    }
    const ws = sftp.createWriteStream(tmp, { mode: 0o600 });
    ws.on("error", reject);
    ws.on("close", () => resolve());
    ws.end(Buffer.from(source.data));
  });
}

/** Check, SFTP, verify and move: four round trips for any number of files. */
async function uploadOverSftp(
  s: SshSession,
  items: UploadItem[],
  opts: { signal?: AbortSignal },
): Promise<string[]> {
  const files = await Promise.all(
    items.map(async (it) => {
      const src = it.source;
      const want =
        "data" in src ? sha256(Buffer.from(src.data)) : (src.sha256 ?? (await sha256OfFile(src.file)));
      return {
        ...it,
        // Large files (the Node runtime, bundles) keep their verified hash in a sidecar: re-hashing
        // 99 MB costs ~40 s per step under TCG. The sidecar is trusted only while size, mtime and
        // inode are the ones recorded right after the verified upload.
        sidecar: !("data" in src),
        want,
        mode: (it.mode ?? 0o644).toString(8),
        owner: it.owner ?? "root:root",
        // /var/tmp: disk-backed, where /tmp may be a small tmpfs on a real host.
        tmp: `/var/tmp/.lab-upload-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`,
      };
    }),
  );
  const check = files
    .map((f, i) =>
      unchangedCheck(f.remotePath, f.want, f.owner, f.mode, f.sidecar).replace(
        /echo unchanged/,
        `echo unchanged ${i}`,
      ),
    )
    .join("\n");
  const out = await s.run(check, { root: true, signal: opts.signal, timeoutMs: 300_000 });
  const same = new Set(
    out
      .split("\n")
      .flatMap((l) => (/^unchanged (\d+)$/.exec(l.trim()) ? [Number(l.trim().split(" ")[1])] : [])),
  );
  const todo = files.filter((_, i) => !same.has(i));
  if (!todo.length) return [];
  const sftp = await s.openSftp();
  try {
    await Promise.all(todo.map((f) => put(sftp, f.source, f.tmp)));
  } finally {
    sftp.end();
  }
  const sums = await s.run(`sha256sum ${todo.map((f) => shq(f.tmp)).join(" ")}`, {
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
    await s.exec(`rm -f ${todo.map((f) => shq(f.tmp)).join(" ")}`);
    throw new LabError({
      code: "UPLOAD_CORRUPT",
      what: `upload to ${s.machine.name} arrived corrupted: ${bad.map((f) => `${f.remotePath} (sha256 ${got.get(f.tmp) ?? "none"}, expected ${f.want})`).join(", ")}`,
      where: s.machine.name,
      fix: "retry; check the host's disk space and the network",
      source: "host",
    });
  }
  const move = todo
    .map((f) => {
      const dst = shq(f.remotePath);
      return (
        `mkdir -p ${shq(dirOf(f.remotePath))} && chown ${shq(f.owner)} ${shq(f.tmp)} && chmod ${f.mode} ${shq(f.tmp)} && mv -f ${shq(f.tmp)} ${shq(f.remotePath + ".lab-new")} && mv -f ${shq(f.remotePath + ".lab-new")} ${dst}` +
        (f.sidecar
          ? ` && printf '%s %s\\n' ${f.want} "$(stat -c '%s %Y %i' ${dst})" > ${shq(f.remotePath + SHA256_SIDECAR)}`
          : "")
      );
    })
    .join(" && ");
  // as long as the other round trips here: a master busy starting its services is slow to fork sudo
  await s.run(move, { root: true, signal: opts.signal, timeoutMs: 300_000 });
  return todo.map((f) => f.remotePath);
}
