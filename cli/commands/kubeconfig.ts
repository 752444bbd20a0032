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
import { needsTunnel, tunnelPort } from "./tunnel.ts";

interface KubeconfigOptions {
  file?: string;
  output?: string;
  merge?: boolean | string;
}

/** The admin kubeconfig of lab `name`: the lab CA, the admin client cert and the VIP endpoint. */
export async function adminKubeconfig(
  state: LabState,
  fallbackServer?: () => Promise<string>,
  /** Instead of the recorded endpoint (a local tunnel's address). */
  serverOverride?: string,
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
  const server = serverOverride ?? recorded?.server ?? (fallbackServer ? await fallbackServer() : undefined);
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
      "print the admin kubeconfig of a lab (API on the VIP; on a remote hypervisor 127.0.0.1 via `lab tunnel`), or write it / merge it into ~/.kube/config",
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
      // Behind a hypervisor's jump, kubectl reaches the API through `lab tunnel` on 127.0.0.1.
      const tunnel = (await needsTunnel(state)) ? await tunnelPort(state) : undefined;
      const { text, server } = await adminKubeconfig(
        state,
        async () => apiEndpoint(plan(await fromTopology())),
        tunnel !== undefined ? `https://127.0.0.1:${tunnel}` : undefined,
      );
      const hint =
        tunnel !== undefined
          ? `the API is behind the hypervisor: keep \`lab tunnel ${labName}\` running for ${server}\n`
          : "";
      const tunnelJson =
        tunnel !== undefined ? { tunnel: { port: tunnel, command: `lab tunnel ${labName}` } } : {};
      if (opts.merge) {
        const target =
          typeof opts.merge === "string"
            ? opts.merge
            : (process.env.KUBECONFIG?.split(":")[0] ?? join(homedir(), ".kube", "config"));
        const existing = existsSync(target) ? await readFile(target, "utf8") : "";
        await writeFileAtomic(target, mergeKubeconfig(existing, text), 0o600);
        if (g.json)
          printJson({
            lab: labName,
            server,
            merged: target,
            context: `lab-admin@lab-${labName}`,
            ...tunnelJson,
          });
        else
          process.stdout.write(
            `merged lab "${labName}" (${server}) into ${target}; current context lab-admin@lab-${labName}\n${hint}`,
          );
      } else if (opts.output) {
        await writeFileAtomic(opts.output, text, 0o600);
        if (g.json) printJson({ lab: labName, server, written: opts.output, ...tunnelJson });
        else
          process.stdout.write(
            `wrote ${opts.output} (lab "${labName}", ${server}); use: kubectl --kubeconfig ${opts.output} get nodes\n${hint}`,
          );
      } else if (g.json) {
        printJson({ lab: labName, server, kubeconfig: text, ...tunnelJson });
      } else {
        process.stdout.write(text);
        process.stderr.write(hint);
      }
    });
}
