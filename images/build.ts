/**
 * Builds a guest base image from a recipe: debootstrap into a temp dir, write the lean-boot
 * configuration, a small initrd, `mkfs.ext4 -d` (no loop mounts, no root-only mount tricks),
 * convert to qcow2, copy out kernel and initrd, then rename the finished directory into the cache.
 */
import { existsSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, readdir, rename, rm, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { execa } from "execa";
import { LabError } from "../topology/errors.ts";
import { step, type Reporter } from "../topology/progress.ts";
import { imageCacheDir, readImage, type CachedImage, type ImageManifest } from "./cache.ts";
import { ENABLED_UNITS, guestFiles, KERNEL_CMDLINE, MASKED_UNITS } from "./guest-config.ts";
import { recipeKey, type Recipe } from "./recipe.ts";

export interface BuildOptions {
  reporter: Reporter;
  cacheDir?: string;
  /** Rebuild even if the cache has this key. */
  force?: boolean;
  signal?: AbortSignal;
}

/** Returns the cached image for the recipe, building it first when it is not there. */
export async function buildImage(
  recipe: Recipe,
  opts: BuildOptions,
): Promise<CachedImage & { cached: boolean }> {
  const cacheDir = opts.cacheDir ?? imageCacheDir();
  const key = recipeKey(recipe);
  const existing = await readImage(key, cacheDir);
  if (existing && !opts.force) {
    opts.reporter.event({ step: "image.cached", state: "skipped", message: `${key} is in the cache` });
    return { ...existing, cached: true };
  }
  await mkdir(cacheDir, { recursive: true });
  const started = Date.now();
  const work = await mkdtemp(join(cacheDir, `.build-${key}-`));
  try {
    const rootfs = join(work, "rootfs");
    const out = join(work, "out");
    await mkdir(out);
    const run = (id: string, cmd: string, args: string[], message?: string) =>
      step(opts.reporter, id, () => exec(cmd, args, opts.signal), {
        message: message ?? `${cmd} ${args[0] ?? ""}`,
      });

    await run(
      "image.debootstrap",
      "debootstrap",
      [
        `--variant=${recipe.variant}`,
        `--include=${recipe.packages.join(",")}`,
        `--cache-dir=${await debCacheDir(cacheDir)}`,
        recipe.suite,
        rootfs,
        recipe.mirror,
      ],
      `debootstrap ${recipe.suite} with ${recipe.packages.length} packages (about 1-2 minutes)`,
    );
    await step(opts.reporter, "image.configure", () => configureRootfs(rootfs, opts.signal));
    await run(
      "image.initrd",
      "chroot",
      [rootfs, "update-initramfs", "-u", "-k", "all"],
      "small initrd (virtio only)",
    );
    const { kernel, initrd } = await step(opts.reporter, "image.kernel", () => copyKernel(rootfs, out));
    await step(opts.reporter, "image.trim", () => trimRootfs(rootfs));
    const raw = join(work, "root.raw");
    await run(
      "image.mkfs",
      "mkfs.ext4",
      ["-q", "-F", "-L", "labroot", "-d", rootfs, raw, `${recipe.rootSizeMiB}M`],
      "ext4 filesystem from the rootfs",
    );
    await run(
      "image.qcow2",
      "qemu-img",
      ["convert", "-O", "qcow2", raw, join(out, "disk.qcow2")],
      "qcow2 base",
    );
    await rm(raw, { force: true });
    const manifest: ImageManifest = {
      key,
      recipe: recipe.name,
      builtAt: new Date().toISOString(),
      kernel,
      initrd,
      disk: "disk.qcow2",
      kernelCmdline: KERNEL_CMDLINE,
      buildSeconds: Math.round((Date.now() - started) / 1000),
    };
    await writeFile(join(out, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
    // The base must never change under the overlays built on it.
    await chmod(join(out, "disk.qcow2"), 0o444);
    const final = join(cacheDir, key);
    // Another build of the same key may have finished meanwhile; labs may already use it.
    if (opts.force || !(await readImage(key, cacheDir))) {
      await rm(final, { recursive: true, force: true });
      await rename(out, final);
    }
    const img = await readImage(key, cacheDir);
    if (!img) throw new Error(`image ${key} vanished after the build`);
    return { ...img, cached: false };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function debCacheDir(cacheDir: string): Promise<string> {
  const dir = join(cacheDir, ".debs");
  await mkdir(dir, { recursive: true });
  return dir;
}

async function exec(cmd: string, args: string[], signal?: AbortSignal): Promise<void> {
  try {
    await execa(cmd, args, {
      cancelSignal: signal,
      stdin: "ignore",
      env: { DEBIAN_FRONTEND: "noninteractive" },
    });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; shortMessage?: string; code?: string };
    if (e.code === "ENOENT") {
      throw new LabError({
        code: "HOST_TOOL_MISSING",
        what: `${cmd} is not installed`,
        fix: "run `lab doctor --fix`",
        source: "host",
      });
    }
    const tail = `${e.stderr ?? ""}\n${e.stdout ?? ""}`.trim().split("\n").slice(-8).join("\n");
    throw new LabError({
      code: "IMAGE_BUILD_FAILED",
      what: `${cmd} failed: ${e.shortMessage ?? String(err)}\n${tail}`,
      fix: "check access to the Debian mirror and free disk space; the cache was left unchanged",
      source: "host",
    });
  }
}

async function configureRootfs(rootfs: string, signal?: AbortSignal): Promise<void> {
  for (const [rel, content] of Object.entries(guestFiles())) {
    const p = join(rootfs, rel);
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, content);
  }
  for (const unit of MASKED_UNITS) {
    const p = join(rootfs, "etc/systemd/system", unit);
    await rm(p, { force: true });
    await symlink("/dev/null", p);
  }
  await exec("chroot", [rootfs, "systemctl", "enable", ...ENABLED_UNITS], signal);
  // Host keys come from each VM's seed; a machine-id per VM is made on its first boot.
  for (const f of await readdir(join(rootfs, "etc/ssh"))) {
    if (f.startsWith("ssh_host_")) await rm(join(rootfs, "etc/ssh", f));
  }
  await writeFile(join(rootfs, "etc/machine-id"), "");
  await rm(join(rootfs, "var/lib/dbus/machine-id"), { force: true });
  await rm(join(rootfs, "etc/hostname"), { force: true });
}

async function copyKernel(rootfs: string, out: string): Promise<{ kernel: string; initrd: string }> {
  const boot = join(rootfs, "boot");
  const files = await readdir(boot);
  const kernel = files
    .filter((f) => f.startsWith("vmlinuz-"))
    .sort()
    .pop();
  const initrd = files
    .filter((f) => f.startsWith("initrd.img-"))
    .sort()
    .pop();
  if (!kernel || !initrd) throw new Error(`no kernel/initrd in ${boot}: ${files.join(", ")}`);
  await copyFile(join(boot, kernel), join(out, "vmlinuz"));
  await copyFile(join(boot, initrd), join(out, "initrd.img"));
  return { kernel: "vmlinuz", initrd: "initrd.img" };
}

async function trimRootfs(rootfs: string): Promise<void> {
  for (const dir of ["var/cache/apt/archives", "var/lib/apt/lists"]) {
    const p = join(rootfs, dir);
    if (!existsSync(p)) continue;
    for (const f of await readdir(p)) {
      if (f === "partial" || f === "lock") continue;
      await rm(join(p, f), { recursive: true, force: true });
    }
  }
}
