import type { Command } from "commander";
import { labJsonSchema } from "../../topology/schema.ts";
import { printJson } from "../output.ts";

export function registerSchema(program: Command): void {
  program
    .command("schema")
    .description("print the JSON Schema of lab.yaml (for editor completion: yaml-language-server)")
    .action(() => printJson(labJsonSchema()));
}
