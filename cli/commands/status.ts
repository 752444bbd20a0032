import type { Command } from "commander";
import { silentReporter } from "../../topology/progress.ts";
import { labStatus } from "../lab-run.ts";
import { printJson, type GlobalOptions } from "../output.ts";
import { resolveLabName } from "./lab-name.ts";

export function registerStatus(program: Command): void {
  program
    .command("status [NAME]")
    .description("list the lab's machines with their state, address, pid, uptime and accel")
    .option("-f, --file <FILE>", "topology file naming the lab when NAME is not given")
    .action(async (name: string | undefined, opts: { file?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const labName = await resolveLabName(name, opts.file);
      const { plan, machines } = await labStatus(labName, silentReporter);
      const rows = machines.map((m) => {
        const node = plan?.nodes.find((n) => n.name === m.name);
        return { name: m.name, role: node?.role, address: node?.address, state: m.state, detail: m.detail };
      });
      if (g.json) {
        printJson({
          lab: labName,
          exists: plan !== undefined,
          provider: plan?.provider.type,
          machines: rows,
        });
        return;
      }
      if (!plan) {
        process.stdout.write(`lab ${labName} does not exist (no state); \`lab up\` creates it\n`);
        return;
      }
      const table = [
        ["NODE", "ROLE", "STATE", "DETAIL"],
        ...rows.map((r) => [r.name, r.role ?? "", r.state, r.detail ?? ""]),
      ];
      const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
      process.stdout.write(`lab ${labName} (${plan.provider.type}, ${plan.network.cidr})\n`);
      for (const r of table)
        process.stdout.write(
          r
            .map((c, i) => c.padEnd(widths[i]!))
            .join("  ")
            .trimEnd() + "\n",
        );
    });
}
