/** The `lab` command: parses arguments, runs one command, turns errors into one line and an exit code. */
import { Command, CommanderError } from "commander";
import { EXIT, reportError, type GlobalOptions } from "./output.ts";
import { registerValidate } from "./commands/validate.ts";
import { registerPlan } from "./commands/plan.ts";
import { registerSchema } from "./commands/schema.ts";
import { registerDoctor } from "./commands/doctor.ts";
import { registerUp } from "./commands/up.ts";
import { registerDown } from "./commands/down.ts";
import { registerStatus } from "./commands/status.ts";
import { registerStop } from "./commands/stop.ts";
import { registerStart } from "./commands/start.ts";
import { registerSsh } from "./commands/ssh.ts";
import { registerLogs } from "./commands/logs.ts";
import { registerImage } from "./commands/image.ts";
import { registerKubeconfig } from "./commands/kubeconfig.ts";
import { registerExport } from "./commands/export.ts";
import { registerTunnel } from "./commands/tunnel.ts";

export function buildProgram(): Command {
  const program = new Command("lab")
    .description("Declarative highly available clusters on QEMU/KVM VMs, libvirt or bare metal")
    .option("--json", "machine-readable output (JSON)")
    .option("--debug", "show stack traces and internal detail")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  program.addHelpText(
    "after",
    `
Topology: -f FILE, else ./lab.yaml, else the built-in default lab (3 masters, 2 workers).
Exit codes: 0 ok, 1 bad input, 2 host problem, 3 lab locked, 4 not ready, 70 bug.
State: $LAB_HOME (default ~/.local/state/lab).`,
  );
  for (const register of [
    registerValidate,
    registerPlan,
    registerSchema,
    registerUp,
    registerDown,
    registerStop,
    registerStart,
    registerStatus,
    registerSsh,
    registerLogs,
    registerImage,
    registerDoctor,
    registerKubeconfig,
    registerExport,
    registerTunnel,
  ])
    register(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are not errors; commander already printed the message.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    return reportError(err, program.opts<GlobalOptions>());
  }
}

process.exitCode = await main(process.argv.slice(2));
