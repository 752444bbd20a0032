/** A lab's machines as host processes, found in /proc by the marker in their argv (no state needed). */
import { readdir, readFile } from "node:fs/promises";

export interface MachineProcess {
  pid: number;
  node: string;
  /** Seconds since the process started. */
  uptimeSeconds: number;
}

/** Every process whose argv `nodeOf` recognises as one of the lab's machines, with that node's name. */
export async function findMachineProcesses(
  nodeOf: (argv: string[]) => string | undefined,
): Promise<MachineProcess[]> {
  const out: MachineProcess[] = [];
  const uptime = Number((await readFile("/proc/uptime", "utf8")).split(" ")[0]);
  const ticks = 100; // USER_HZ on Linux
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = (await readFile(`/proc/${entry}/cmdline`, "utf8")).split("\0").filter(Boolean);
      const node = nodeOf(argv);
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
