/** Finding a lab's QEMU processes from /proc by their `-name lab:LAB/NODE`, without any state. */
import { readdir, readFile } from "node:fs/promises";

export interface VmProcess {
  pid: number;
  node: string;
  /** Seconds since the process started. */
  uptimeSeconds: number;
}

/** Node name from a QEMU argv when it belongs to `lab` (pure). */
export function nodeFromArgv(argv: string[], lab: string): string | undefined {
  if (!argv[0] || !/qemu-system/.test(argv[0])) return undefined;
  const i = argv.indexOf("-name");
  const value = i >= 0 ? argv[i + 1] : undefined;
  const prefix = `lab:${lab}/`;
  if (!value?.startsWith(prefix)) return undefined;
  return value.slice(prefix.length).split(",")[0];
}

export async function findVmProcesses(lab: string): Promise<VmProcess[]> {
  const out: VmProcess[] = [];
  const uptime = Number((await readFile("/proc/uptime", "utf8")).split(" ")[0]);
  const ticks = 100; // USER_HZ on Linux
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = (await readFile(`/proc/${entry}/cmdline`, "utf8")).split("\0").filter(Boolean);
      const node = nodeFromArgv(argv, lab);
      if (!node) continue;
      const stat = await readFile(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const startTicks = Number(fields[19]);
      out.push({
        pid: Number(entry),
        node,
        uptimeSeconds: Math.max(0, Math.round(uptime - startTicks / ticks)),
      });
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
