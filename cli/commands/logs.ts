import type { Command } from "commander";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { LabError } from "../../topology/errors.ts";
import { LabState } from "../../topology/state.ts";
import { resolveLabName } from "./lab-name.ts";

export function registerLogs(program: Command): void {
  program
    .command("logs <NODE>")
    .description("print a node's logs; --console prints its serial console (boot messages)")
    .option("--console", "the VM's serial console log")
    .option("-f, --file <FILE>", "topology file naming the lab")
    .option("--lab <NAME>", "lab name (instead of -f)")
    .action(async (node: string, opts: { console?: boolean; file?: string; lab?: string }) => {
      const labName = await resolveLabName(opts.lab, opts.file);
      const path = new LabState(labName).path("vms", node, "console.log");
      if (!existsSync(path)) {
        throw new LabError({
          code: "NO_CONSOLE_LOG",
          what: `no console log for node ${node} of lab ${labName} (${path})`,
          fix: "console logs exist for qemu labs after `lab up` started the VM",
        });
      }
      process.stdout.write(await readFile(path));
    });
}
