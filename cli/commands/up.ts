import type { Command } from "commander";
import { LabError } from "../../topology/errors.ts";
import { parseDuration } from "../duration.ts";
import { loadTopology } from "../../topology/load.ts";
import { planForUp, labUp } from "../lab-run.ts";
import type { GlobalOptions } from "../output.ts";
import { createReporter, printResultLine } from "../progress.ts";
import { runInterruptible } from "../interruptible.ts";
import { LabState } from "../../topology/state.ts";
import { apiBehindJump } from "../../ssh/dialer.ts";

export function registerUp(program: Command): void {
  program
    .command("up")
    .description("create the lab's machines (in parallel) and bootstrap the cluster; rerun to converge")
    .option("-f, --file <FILE>", "topology file (default: ./lab.yaml, else the built-in default)")
    .option(
      "--machines-only",
      "create the machines and stop before the cluster bootstrap (provisioner checks)",
    )
    .option(
      "--wait <DURATION>",
      "how long to wait for every node Ready before failing with the readiness check (e.g. 5m, 90s; default 5m)",
    )
    .action(async (opts: { file?: string; machinesOnly?: boolean; wait?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const waitReadyTimeoutMs = opts.wait !== undefined ? parseDuration(opts.wait) : undefined;
      const loaded = await loadTopology(opts.file);
      const nodes = (await planForUp(loaded.lab, new LabState(loaded.lab.metadata.name))).nodes.map(
        (n) => n.name,
      );
      const reporter = createReporter({ json: g.json, nodes });
      const { plan, machines } = await runInterruptible(
        reporter,
        (signal) =>
          labUp(loaded, reporter, signal, {
            bootstrap: !opts.machinesOnly,
            ...(waitReadyTimeoutMs ? { waitReadyTimeoutMs } : {}),
          }),
        () =>
          new LabError({
            code: "INTERRUPTED",
            what: "lab up was interrupted; the VMs started so far keep running",
            fix: `run \`lab up\` again to converge, or \`lab down ${loaded.lab.metadata.name}\` to remove everything`,
            source: "user",
          }),
      );
      if (g.json) {
        printResultLine({
          lab: plan.lab,
          machines: machines.map(({ name, role, address }) => ({ name, role, address })),
        });
      } else {
        process.stdout.write(
          `lab ${plan.lab} is up: ${machines.map((m) => `${m.name} ${m.address}`).join(", ")}\n` +
            `  lab ssh ${machines[0]?.name ?? "NODE"}${opts.file ? ` -f ${opts.file}` : ""}    lab status    lab down ${plan.lab}\n` +
            (!opts.machinesOnly && apiBehindJump(machines, plan.network.vip)
              ? `  the API is on the hypervisor's lab network: \`lab tunnel ${plan.lab}\` (keep it running), then \`lab kubeconfig ${plan.lab} --merge\`\n`
              : ""),
        );
      }
    });
}
