import type { Command } from "commander";
import { loadTopology } from "../../topology/load.ts";
import { printJson, type GlobalOptions } from "../output.ts";

export function registerValidate(program: Command): void {
  program
    .command("validate")
    .description("check a topology file and report every problem at once (file:line:column field: message)")
    .option("-f, --file <FILE>", "topology file (default: ./lab.yaml, else the built-in default)")
    .action(async (opts: { file?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const { lab, source } = await loadTopology(opts.file);
      if (g.json) printJson({ valid: true, source, name: lab.metadata.name });
      else process.stdout.write(`${source}: valid (lab "${lab.metadata.name}")\n`);
    });
}
