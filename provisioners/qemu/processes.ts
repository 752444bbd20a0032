/** Finding a lab's QEMU processes from /proc by their `-name lab:LAB/NODE`, without any state. */
import { findMachineProcesses, type MachineProcess } from "../host-processes.ts";

export type VmProcess = MachineProcess;

/** Node name from a QEMU argv when it belongs to `lab` (pure). */
export function nodeFromArgv(argv: string[], lab: string): string | undefined {
  if (!argv[0] || !/qemu-system/.test(argv[0])) return undefined;
  const i = argv.indexOf("-name");
  const value = i >= 0 ? argv[i + 1] : undefined;
  const prefix = `lab:${lab}/`;
  if (!value?.startsWith(prefix)) return undefined;
  return value.slice(prefix.length).split(",")[0];
}

export function findVmProcesses(lab: string): Promise<VmProcess[]> {
  return findMachineProcesses((argv) => nodeFromArgv(argv, lab));
}
