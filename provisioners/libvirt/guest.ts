/**
 * What a libvirt lab shares with the qemu provider: the guest image (built from the recipe or a
 * user's cloud image), the cloud-init NoCloud seed with the pre-generated host key, and the
 * ssh-ready check. Only the plumbing into libvirt differs.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, stat } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { execa } from "execa";
import { writeSeedIso } from "../../cloud-init/iso.ts";
import { renderSeed } from "../../cloud-init/seed.ts";
import { buildImage } from "../../images/build.ts";
import { isImagePath, loadRecipe } from "../../images/recipe.ts";
import { LabError } from "../../topology/errors.ts";
import { ensureHostKey, ensureLabSshKey } from "../keys.ts";
import { waitSshReady } from "../ssh-ready.ts";
import type { GuestImage, LibvirtDeps } from "./index.ts";
import { poolPath, volumes } from "./names.ts";

function sshTimeoutMs(): number {
  const s = Number(process.env.LAB_SSH_TIMEOUT);
  return (Number.isFinite(s) && s > 0 ? s : 600) * 1000;
}

async function consoleTail(path: string, lines = 15): Promise<string> {
  try {
    // eslint-disable-next-line no-control-regex -- stripping terminal escapes is the point
    const text = (await readFile(path, "utf8")).replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").replace(/\r/g, "");
    return text
      .split("\n")
      .filter((l) => l.trim())
      .slice(-lines)
      .join("\n");
  } catch {
    return "(no console output yet)";
  }
}

export const guestDeps: LibvirtDeps = {
  async image(ctx): Promise<GuestImage> {
    const image = ctx.plan.image;
    if (isImagePath(image)) {
      const path = isAbsolute(image) ? image : resolve(image);
      if (!existsSync(path)) {
        throw new LabError({
          code: "IMAGE_NOT_FOUND",
          what: `image file ${path} does not exist`,
          where: "spec.image",
          fix: "give the path of a cloud image with cloud-init (qcow2 or raw), or debian-12 for the built-in image",
        });
      }
      const info = JSON.parse((await execa("qemu-img", ["info", "--output=json", path])).stdout) as {
        format: string;
      };
      const st = await stat(path);
      return {
        key: `${path}:${st.size}:${st.mtimeMs}`,
        disk: path,
        format: info.format === "raw" ? "raw" : "qcow2",
      };
    }
    const img = await buildImage(await loadRecipe(image), { reporter: ctx.reporter, signal: ctx.signal });
    return {
      key: img.key,
      disk: img.paths.disk,
      format: "qcow2",
      kernel: { path: img.paths.kernel, initrd: img.paths.initrd, cmdline: img.kernelCmdline },
    };
  },

  async seed(ctx, node) {
    const { plan, state } = ctx;
    const labKey = await ensureLabSshKey(state);
    const hostKey = await ensureHostKey(state, node.name);
    await mkdir(state.path("libvirt"), { recursive: true, mode: 0o700 });
    const file = state.path("libvirt", `${node.name}-seed.iso`);
    await writeSeedIso(
      file,
      renderSeed({
        lab: plan.lab,
        hostname: node.name,
        user: node.ssh.user,
        authorizedKey: labKey.publicKey,
        hostKey,
        mac: node.mac,
        address: node.address,
        prefix: plan.network.prefix,
        gateway: plan.network.gateway || undefined,
      }),
    );
    return file;
  },

  async waitForSsh(ctx, m) {
    const consoleLog = `${poolPath(ctx.plan.lab)}/${volumes.console(m.name)}`;
    await waitSshReady(
      { node: m.name, ...m.ssh },
      {
        timeoutMs: sshTimeoutMs(),
        intervalMs: 1500,
        signal: ctx.signal,
        hints: { consoleLog, consoleTail: () => consoleTail(consoleLog) },
      },
    );
  },
};
