/**
 * What a libvirt lab shares with the qemu provider: the guest image (built from the recipe or a
 * user's cloud image), the cloud-init NoCloud seed with the pre-generated host key, and the
 * ssh-ready check. Only the plumbing into libvirt differs.
 */
import { mkdir } from "node:fs/promises";
import { shq } from "../../lib/shell.ts";
import { buildImage } from "../../images/build.ts";
import { isImagePath, loadRecipe } from "../../images/recipe.ts";
import { inspectUserImage } from "../../images/user-image.ts";
import { ensureHostKey, ensureLabSshKey } from "../keys.ts";
import type { SshJump } from "../../ssh/endpoint.ts";
import { connectJump, execOnJump } from "../../ssh/jump.ts";
import { writeNodeSeed } from "../vm-node.ts";
import { consoleTail, sshTimeoutMs, waitSshReady } from "../../ssh/ready.ts";
import type { GuestImage, LibvirtDeps } from "./index.ts";

/** The console's last lines on a remote hypervisor, read over the pinned jump. */
async function remoteConsoleTail(jump: SshJump, path: string): Promise<string> {
  try {
    const conn = await connectJump(jump);
    try {
      const r = await execOnJump(conn, `tail -c 65536 ${shq(path)}`);
      // eslint-disable-next-line no-control-regex -- stripping terminal escapes is the point
      const text = r.stdout.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").replace(/\r/g, "");
      return text
        .split("\n")
        .filter((l) => l.trim())
        .slice(-15)
        .join("\n");
    } finally {
      conn.close();
    }
  } catch {
    return "(console not readable on the hypervisor)";
  }
}

export const guestDeps: LibvirtDeps = {
  async image(ctx): Promise<GuestImage> {
    const image = ctx.plan.image;
    if (isImagePath(image)) {
      const user = await inspectUserImage(image);
      return {
        key: `${user.path}:${user.size}:${user.mtimeMs}`,
        disk: user.path,
        format: user.format === "raw" ? "raw" : "qcow2",
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
    await writeNodeSeed(file, plan, node, labKey.publicKey, hostKey);
    return file;
  },

  async waitForSsh(ctx, m, consoleLog) {
    const jump = m.ssh.jump;
    await waitSshReady(
      { node: m.name, ...m.ssh },
      {
        timeoutMs: sshTimeoutMs(),
        intervalMs: 1500,
        signal: ctx.signal,
        hints: {
          consoleLog: jump ? `${jump.host}:${consoleLog}` : consoleLog,
          consoleTail: () => (jump ? remoteConsoleTail(jump, consoleLog) : consoleTail(consoleLog)),
        },
      },
    );
  },
};
