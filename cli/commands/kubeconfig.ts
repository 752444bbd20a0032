import type { Command } from "commander";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import {
  apiEndpoint,
  mergeKubeconfig,
  renderKubeconfig,
  type LabEndpoint,
} from "../../bootstrap/kubeconfig.ts";
import { LabError } from "../../topology/errors.ts";
import { loadTopology } from "../../topology/load.ts";
import { plan } from "../../topology/plan.ts";
import { LabState, writeFileAtomic } from "../../topology/state.ts";
import { printJson, type GlobalOptions } from "../output.ts";

interface KubeconfigOptions {
  file?: string;
  output?: string;
  merge?: boolean | string;
}

/** The admin kubeconfig of lab `name`: the lab CA, the admin client cert and the VIP endpoint. */
export async function adminKubeconfig(
  state: LabState,
  fallbackServer?: () => Promise<string>,
): Promise<{ text: string; server: string }> {
  const need = ["pki/ca.crt", "pki/admin.crt", "pki/admin.key"];
  const missing = need.filter((f) => !existsSync(state.path(f)));
  if (missing.length) {
    throw new LabError({
      code: "LAB_NOT_BOOTSTRAPPED",
      what: `lab "${state.name}" has no admin credentials yet (${missing.join(", ")} missing in ${state.dir})`,
      fix: `run \`lab up\` for this lab first (or check the name: \`lab kubeconfig NAME\`)`,
      source: "user",
    });
  }
  const recorded = await state.readJson<LabEndpoint>("endpoint.json");
  const server = recorded?.server ?? (fallbackServer ? await fallbackServer() : undefined);
  if (!server) {
    throw new LabError({
      code: "LAB_NOT_BOOTSTRAPPED",
      what: `lab "${state.name}" has no recorded API endpoint`,
      fix: "run `lab up` again",
      source: "user",
    });
  }
  const text = renderKubeconfig({
    cluster: `lab-${state.name}`,
    user: "lab-admin",
    server,
    ca: { pem: await readFile(state.path("pki/ca.crt"), "utf8") },
    cert: { pem: await readFile(state.path("pki/admin.crt"), "utf8") },
    key: { pem: await readFile(state.path("pki/admin.key"), "utf8") },
  });
  return { text, server };
}

export function registerKubeconfig(program: Command): void {
  program
    .command("kubeconfig")
    .argument("[NAME]", "lab name (default: the topology's metadata.name)")
    .description(
      "print the admin kubeconfig of a lab (API on the VIP), or write it / merge it into ~/.kube/config",
    )
    .option("-f, --file <FILE>", "topology file (default: ./lab.yaml, else the built-in default)")
    .option("-o, --output <PATH>", "write the kubeconfig to PATH (mode 0600) instead of printing it")
    .option(
      "--merge [PATH]",
      "merge into a kubeconfig (default $KUBECONFIG or ~/.kube/config) and switch to its context",
    )
    .action(async (name: string | undefined, opts: KubeconfigOptions, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const fromTopology = async () => {
        const { lab } = await loadTopology(opts.file);
        return lab;
      };
      const labName = name ?? (await fromTopology()).metadata.name;
      const state = new LabState(labName);
      const { text, server } = await adminKubeconfig(state, async () =>
        apiEndpoint(plan(await fromTopology())),
      );
      if (opts.merge) {
        const target =
          typeof opts.merge === "string"
            ? opts.merge
            : (process.env.KUBECONFIG?.split(":")[0] ?? join(homedir(), ".kube", "config"));
        const existing = existsSync(target) ? await readFile(target, "utf8") : "";
        await writeFileAtomic(target, mergeKubeconfig(existing, text), 0o600);
        if (g.json) printJson({ lab: labName, server, merged: target, context: `lab-admin@lab-${labName}` });
        else
          process.stdout.write(
            `merged lab "${labName}" (${server}) into ${target}; current context lab-admin@lab-${labName}\n`,
          );
      } else if (opts.output) {
        await writeFileAtomic(opts.output, text, 0o600);
        if (g.json) printJson({ lab: labName, server, written: opts.output });
        else
          process.stdout.write(
            `wrote ${opts.output} (lab "${labName}", ${server}); use: kubectl --kubeconfig ${opts.output} get nodes\n`,
          );
      } else if (g.json) {
        printJson({ lab: labName, server, kubeconfig: text });
      } else {
        process.stdout.write(text);
      }
    });
}
