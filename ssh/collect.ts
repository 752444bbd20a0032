/**
 * Runs a fixed set of commands as root on every machine and writes each one's output into
 * `dir/NODE/FILE`, best effort: a machine that cannot be reached gets an `error.txt` saying why,
 * the others are still collected. What to collect is the caller's (the bootstrap's journals, a
 * provisioner's host logs); this only carries it.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { LabError } from "../topology/errors.ts";
import type { SshHost } from "./endpoint.ts";
import { SshSession } from "./session.ts";

export async function collectOverSsh(
  hosts: SshHost[],
  dir: string,
  commands: Record<string, string>,
  signal?: AbortSignal,
): Promise<{ collected: string[]; failed: string[] }> {
  const collected: string[] = [];
  const failed: string[] = [];
  await Promise.all(
    hosts.map(async (m) => {
      const out = join(dir, m.name);
      await mkdir(out, { recursive: true });
      let s: SshSession | undefined;
      try {
        s = await SshSession.connect(m, { signal, timeoutMs: 15_000 });
        for (const [file, cmd] of Object.entries(commands)) {
          const r = await s.sudo(cmd, { timeoutMs: 60_000, signal });
          await writeFile(join(out, file), `$ ${cmd}\n${r.stdout}${r.stderr}`);
        }
        collected.push(m.name);
      } catch (err) {
        await writeFile(join(out, "error.txt"), `${err instanceof LabError ? err.message : String(err)}\n`);
        failed.push(m.name);
      } finally {
        s?.close();
      }
    }),
  );
  return { collected: collected.sort(), failed: failed.sort() };
}
