import type { Command } from "commander";
import { existsSync } from "node:fs";
import { loadTopology } from "../../topology/load.ts";
import { plan, type Plan } from "../../topology/plan.ts";
import { LabState } from "../../topology/state.ts";
import { labDown } from "../lab-run.ts";
import type { GlobalOptions } from "../output.ts";
import { createReporter, printResultLine } from "../progress.ts";

export function registerDown(program: Command): void {
  program
    .command("down [NAME]")
    .description("remove every process, network, disk and file of a lab (also after a failed up; idempotent)")
    .option("-f, --file <FILE>", "topology file naming the lab when NAME is not given")
    .action(async (name: string | undefined, opts: { file?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      let labName = name;
      let fromFile: Plan | Plan["provider"]["type"] | undefined;
      if (!labName) {
        const { lab } = await loadTopology(opts.file);
        labName = lab.metadata.name;
        // libvirt: the file names every hypervisor URI, which a lab without state cannot tell.
        fromFile = lab.spec.provider.type === "libvirt" ? plan(lab) : lab.spec.provider.type;
      }
      const existed = existsSync(new LabState(labName).dir);
      const reporter = createReporter({ json: g.json, tty: false });
      await labDown(labName, reporter, fromFile);
      await reporter.close();
      if (g.json) printResultLine({ lab: labName, removed: true, hadState: existed });
      else process.stdout.write(`lab ${labName} is down\n`);
    });
}
