import type { Command } from "commander";
import { parseDuration } from "../duration.ts";
import { labStart } from "../lab-lifecycle.ts";
import type { GlobalOptions } from "../output.ts";
import { createReporter, printResultLine } from "../progress.ts";
import { runInterruptible } from "../interruptible.ts";
import { LabState } from "../../topology/state.ts";
import { LabError } from "../../topology/errors.ts";
import { resolveLabName } from "./lab-name.ts";

export function registerStart(program: Command): void {
  program
    .command("start [NAME]")
    .description(
      "boot a stopped lab (after `lab stop` or a host restart) from its recorded plan and wait for every node Ready",
    )
    .option("-f, --file <FILE>", "topology file naming the lab when NAME is not given")
    .option(
      "--wait <DURATION>",
      "how long to wait for every node Ready before failing with the readiness check (e.g. 5m, 90s; default 5m)",
    )
    .addHelpText(
      "after",
      `
The machines boot from the disks they kept; the bootstrap is rerun (each step idempotent, so
only what is missing is done). A lab that was never created: \`lab up\`. Bare metal: the
services are started again on the hosts.`,
    )
    .action(async (name: string | undefined, opts: { file?: string; wait?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const waitReadyTimeoutMs = opts.wait !== undefined ? parseDuration(opts.wait) : undefined;
      const labName = await resolveLabName(name, opts.file);
      const plan = await new LabState(labName).readJson<{ nodes: { name: string }[] }>("plan.json");
      const reporter = createReporter({ json: g.json, nodes: plan?.nodes.map((n) => n.name) ?? [] });
      const { machines, elapsedMs } = await runInterruptible(
        reporter,
        (signal) => labStart(labName, reporter, signal, waitReadyTimeoutMs ? { waitReadyTimeoutMs } : {}),
        () =>
          new LabError({
            code: "INTERRUPTED",
            what: "lab start was interrupted; the machines started so far keep running",
            fix: `run \`lab start ${labName}\` again to converge, or \`lab stop ${labName}\``,
            source: "user",
          }),
      );
      if (g.json)
        printResultLine({
          lab: labName,
          state: "running",
          elapsedMs,
          machines: machines.map(({ name, role, address }) => ({ name, role, address })),
        });
      else
        process.stdout.write(
          `lab ${labName} is running again in ${(elapsedMs / 1000).toFixed(1)} s: ${machines.map((m) => `${m.name} ${m.address}`).join(", ")}\n`,
        );
    });
}
