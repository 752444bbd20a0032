/** Writes a NoCloud seed as an ISO 9660 image labelled `cidata` (what cloud-init looks for). */
import { chmod, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { execa } from "execa";
import { LabError } from "../topology/errors.ts";
import type { SeedFiles } from "./seed.ts";

export async function writeSeedIso(path: string, files: SeedFiles): Promise<void> {
  const dir = await mkdtemp(join(dirname(path), ".seed-"));
  try {
    for (const [name, content] of Object.entries(files))
      await writeFile(join(dir, name), content, { mode: 0o600 });
    const tmp = `${path}.tmp`;
    try {
      await execa(
        "genisoimage",
        ["-quiet", "-output", tmp, "-volid", "cidata", "-joliet", "-rock", ...Object.keys(files)],
        {
          cwd: dir,
        },
      );
    } catch (err) {
      throw new LabError({
        code: (err as { code?: string }).code === "ENOENT" ? "HOST_TOOL_MISSING" : "SEED_FAILED",
        what: `genisoimage failed: ${(err as Error).message.split("\n")[0]}`,
        fix: "install genisoimage (run `lab doctor --fix`)",
        source: "host",
      });
    }
    await chmod(tmp, 0o600); // it holds the VM's private host key
    await rename(tmp, path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
