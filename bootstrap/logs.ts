/**
 * Debugging is a feature: gathers, from every machine over SSH, the journals of lab's units and
 * their state into `dir/NODE/`, for `lab export logs`. A machine that cannot be reached gets an
 * `error.txt` saying why; the others are still collected.
 */
import type { Machine } from "../provisioners/provisioner.ts";
import { collectOverSsh } from "../ssh/collect.ts";
import { LAB_UNITS } from "../templates/paths.ts";
import { APPLIED_DIR } from "./applied.ts";

/** What is collected from each machine: file name → command (run as root). */
export function logCommands(lines = 5000): Record<string, string> {
  const out: Record<string, string> = {
    "units.txt": `systemctl status --no-pager --full ${LAB_UNITS.join(" ")} 2>&1`,
    // The applied markers show which steps a rerun would skip on this node.
    "files.txt": `ls -laR /etc/lab /opt/lab ${APPLIED_DIR} 2>&1; head -n 1 ${APPLIED_DIR}/*.sha256 2>&1; df -h 2>&1; free -m 2>&1`,
    "network.txt": "ip -o addr show 2>&1; ip route 2>&1; ss -ltnp 2>&1",
  };
  // containerd is the distribution's unit, started by the bootstrap: its journal explains pod failures.
  for (const u of [...LAB_UNITS, "containerd.service"])
    out[`${u.replace(/\.service$/, "")}.log`] = `journalctl -u ${u} --no-pager -o short-iso -n ${lines} 2>&1`;
  return out;
}

/** The journals and unit states of every machine into `dir/NODE/` (ssh/collect.ts). */
export function collectMachineLogs(
  machines: Machine[],
  dir: string,
  signal?: AbortSignal,
): Promise<{ collected: string[]; failed: string[] }> {
  return collectOverSsh(machines, dir, logCommands(), signal);
}
