/**
 * The shared lower layer: the guest image's root filesystem as a directory, extracted once from
 * the cached qcow2 (qemu-img convert to raw, loop-mounted read-only, copied with cp -a) into
 * `IMAGE_DIR/rootfs`. It appears there complete or not at all (built beside it, then renamed), so
 * an interrupted extraction never leaves half a base. Every node's overlay reads it; nothing
 * writes to it.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { LabError } from "../../topology/errors.ts";

export async function ensureRootfs(imageDir: string, disk: string, signal?: AbortSignal): Promise<string> {
  const final = join(imageDir, "rootfs");
  if (existsSync(join(final, "sbin/init")) || existsSync(join(final, "lib/systemd/systemd"))) return final;
  const work = await mkdtemp(join(imageDir, ".rootfs-"));
  const raw = join(work, "root.raw");
  const mnt = join(work, "mnt");
  const tree = join(work, "tree");
  await mkdir(mnt);
  let mounted = false;
  try {
    await run("qemu-img", ["convert", "-O", "raw", disk, raw], signal);
    await run("mount", ["-o", "loop,ro", raw, mnt], signal);
    mounted = true;
    await run("cp", ["-a", `${mnt}/.`, `${tree}/`], signal, true);
    await run("umount", [mnt]);
    mounted = false;
    await rm(final, { recursive: true, force: true });
    await rename(tree, final);
    return final;
  } finally {
    if (mounted) await execa("umount", ["-l", mnt], { reject: false });
    await rm(work, { recursive: true, force: true });
  }
}

async function run(cmd: string, args: string[], signal?: AbortSignal, mkTarget = false): Promise<void> {
  if (mkTarget) await mkdir(args[args.length - 1]!, { recursive: true });
  try {
    await execa(cmd, args, { stdin: "ignore", ...(signal ? { cancelSignal: signal } : {}) });
  } catch (err) {
    const e = err as { stderr?: string; shortMessage?: string };
    throw new LabError({
      code: "IMAGE_ROOTFS_FAILED",
      what: `extracting the image's root filesystem: ${cmd} failed: ${(e.stderr ?? e.shortMessage ?? String(err)).trim()}`,
      fix: "nspawn nodes need root (loop mounts) and free disk space beside the image cache",
      source: "host",
    });
  }
}
