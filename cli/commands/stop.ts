import type { Command } from "commander";
import { parseDuration } from "../duration.ts";
import { labStop, stopTimeoutMs } from "../lab-lifecycle.ts";
import type { GlobalOptions } from "../output.ts";
import { createReporter, printResultLine } from "../progress.ts";
import { runInterruptible } from "../interruptible.ts";
import { LabState } from "../../topology/state.ts";
import { resolveLabName } from "./lab-name.ts";

export function registerStop(program: Command): void {
  program
    .command("stop [NAME]")
    .description(
      "shut the lab down cleanly, keeping its disks: workers, then masters, etcd last; `lab start` boots it again",
    )
    .option("-f, --file <FILE>", "topology file naming the lab when NAME is not given")
    .option(
      "--timeout <DURATION>",
      `deadline of each wait (a node's services, a clean power-off) before it is named stuck and forced (default ${stopTimeoutMs() / 1000}s, or LAB_STOP_TIMEOUT seconds)`,
    )
    .addHelpText(
      "after",
      `
Order: lab-agent and the pods' containers on the workers (SIGTERM, 10 s, SIGKILL), then the
workers powered off; on the masters lab-agent, keepalived (the VIP), lab-server and the pods'
containers, then etcd once nothing writes to it, then the masters
powered off (nspawn: an orderly shutdown of the machine's init; qemu: ACPI power button over
QMP; libvirt: virsh shutdown). A wait past its deadline is forced, named, and the exit code is 2.
Bare metal: the lab does not own the hosts, so only lab's services are stopped (in the same
order) and the hosts keep running; pods' containers keep running under containerd.`,
    )
    .action(async (name: string | undefined, opts: { file?: string; timeout?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const labName = await resolveLabName(name, opts.file);
      const plan = await new LabState(labName).readJson<{ nodes: { name: string }[] }>("plan.json");
      const reporter = createReporter({ json: g.json, nodes: plan?.nodes.map((n) => n.name) ?? [] });
      const result = await runInterruptible(reporter, (signal) =>
        labStop(labName, reporter, {
          signal,
          ...(opts.timeout ? { timeoutMs: parseDuration(opts.timeout) } : {}),
        }),
      );
      const secs = (result.elapsedMs / 1000).toFixed(1);
      if (g.json)
        printResultLine({
          lab: labName,
          state: "stopped",
          servicesOnly: result.record.servicesOnly,
          elapsedMs: result.elapsedMs,
        });
      else
        process.stdout.write(
          result.record.servicesOnly
            ? `lab ${labName} is stopped in ${secs} s (its services; the hosts keep running)\n  lab start ${labName}\n`
            : `lab ${labName} is stopped in ${secs} s (machines powered off, disks kept)\n  lab start ${labName}    lab down ${labName}\n`,
        );
    });
}
