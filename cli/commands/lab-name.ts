import { loadTopology } from "../../topology/load.ts";

/** The lab a command is about: the given name, else the topology's (-f, ./lab.yaml, built-in default). */
export async function resolveLabName(name: string | undefined, file: string | undefined): Promise<string> {
  if (name) return name;
  return (await loadTopology(file)).lab.metadata.name;
}
