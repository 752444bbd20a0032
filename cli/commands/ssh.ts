import type { Command } from "commander";
import { execa } from "execa";
import type { Machine } from "../../provisioners/provisioner.ts";
import { LabError } from "../../topology/errors.ts";
import { LabState } from "../../topology/state.ts";
import { resolveLabName } from "./lab-name.ts";

/** OpenSSH arguments that log into a machine with the lab's key and its pinned host key only. */
export function sshArgs(state: LabState, m: Machine, command: string[]): string[] {
  const knownHosts = state.path("ssh", "known_hosts");
  const j = m.ssh.jump;
  // A machine on a remote hypervisor's lab network: through the hypervisor, pinned by the same file.
  const proxy = j
    ? [
        "-o",
        `ProxyCommand=ssh -i ${j.privateKeyPath} -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile=${knownHosts} -o StrictHostKeyChecking=yes -o LogLevel=ERROR -p ${j.port} -W %h:%p ${j.user}@${j.host}`,
      ]
    : [];
  return [
    ...proxy,
    "-i",
    m.ssh.privateKeyPath,
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    `UserKnownHostsFile=${knownHosts}`,
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "LogLevel=ERROR",
    "-p",
    String(m.ssh.port),
    `${m.ssh.user}@${m.ssh.host}`,
    ...(command.length ? ["--", ...command] : []),
  ];
}

export async function findMachine(
  labName: string,
  node: string,
): Promise<{ state: LabState; machine: Machine }> {
  const state = new LabState(labName);
  const machines = (await state.readJson<Machine[]>("machines.json")) ?? [];
  const machine = machines.find((m) => m.name === node);
  if (!machine) {
    throw new LabError({
      code: "NODE_UNKNOWN",
      what: machines.length
        ? `lab ${labName} has no node "${node}" (nodes: ${machines.map((m) => m.name).join(", ")})`
        : `lab ${labName} has no machines yet`,
      fix: machines.length ? "use one of the listed node names" : "run `lab up` first",
    });
  }
  return { state, machine };
}

export function registerSsh(program: Command): void {
  program
    .command("ssh <NODE> [CMD...]")
    .description("open a shell on a node, or run CMD there (lab ssh NODE -- CMD); the host key is pinned")
    .option("-f, --file <FILE>", "topology file naming the lab")
    .option("--lab <NAME>", "lab name (instead of -f)")
    .action(async (node: string, command: string[], opts: { file?: string; lab?: string }) => {
      const { state, machine } = await findMachine(await resolveLabName(opts.lab, opts.file), node);
      const r = await execa("ssh", sshArgs(state, machine, command), { stdio: "inherit", reject: false });
      process.exitCode = r.exitCode ?? 1;
    });
}
