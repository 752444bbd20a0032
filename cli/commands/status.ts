import type { Command } from "commander";
import type { BootstrapRecord } from "../../bootstrap/index.ts";
import { etcdClusterStatus, type EtcdMemberStatus } from "../../bootstrap/status.ts";
import type { Machine } from "../../provisioners/provisioner.ts";
import { silentReporter } from "../../topology/progress.ts";
import { LabState } from "../../topology/state.ts";
import { labStatus } from "../lab-run.ts";
import { printJson, type GlobalOptions } from "../output.ts";
import { resolveLabName } from "./lab-name.ts";

export function registerStatus(program: Command): void {
  program
    .command("status [NAME]")
    .description("list the lab's machines with their state, address, pid, uptime and accel")
    .option("-f, --file <FILE>", "topology file naming the lab when NAME is not given")
    .action(async (name: string | undefined, opts: { file?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const labName = await resolveLabName(name, opts.file);
      const { plan, machines } = await labStatus(labName, silentReporter);
      const etcd =
        plan && machines.some((m) => m.state === "running") ? await etcdStatus(labName) : undefined;
      const rows = machines.map((m) => {
        const node = plan?.nodes.find((n) => n.name === m.name);
        return { name: m.name, role: node?.role, address: node?.address, state: m.state, detail: m.detail };
      });
      if (g.json) {
        printJson({
          lab: labName,
          exists: plan !== undefined,
          provider: plan?.provider.type,
          machines: rows,
          ...(etcd ? { etcd } : {}),
        });
        return;
      }
      if (!plan) {
        process.stdout.write(`lab ${labName} does not exist (no state); \`lab up\` creates it\n`);
        return;
      }
      const table = [
        ["NODE", "ROLE", "STATE", "DETAIL"],
        ...rows.map((r) => [r.name, r.role ?? "", r.state, r.detail ?? ""]),
      ];
      const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
      process.stdout.write(`lab ${labName} (${plan.provider.type}, ${plan.network.cidr})\n`);
      for (const r of table)
        process.stdout.write(
          r
            .map((c, i) => c.padEnd(widths[i]!))
            .join("  ")
            .trimEnd() + "\n",
        );
      if (etcd) {
        const healthy = etcd.filter((m) => m.healthy).length;
        const leader = etcd.find((m) => m.leader)?.name ?? "none";
        process.stdout.write(`etcd: ${healthy}/${etcd.length} members healthy, leader ${leader}\n`);
        for (const m of etcd.filter((x) => !x.healthy))
          process.stdout.write(`  ${m.name} ${m.endpoint}: ${m.error ?? "unhealthy"}\n`);
      }
    });
}

/** etcd members with health and leader, once the bootstrap has formed the cluster. */
async function etcdStatus(labName: string): Promise<EtcdMemberStatus[] | undefined> {
  const state = new LabState(labName);
  const record = await state.readJson<BootstrapRecord>("bootstrap.json");
  const machines = await state.readJson<Machine[]>("machines.json");
  const plan = await state.readJson<Parameters<typeof etcdClusterStatus>[0]>("plan.json");
  if (!record?.steps.etcd || !machines || !plan) return undefined;
  return etcdClusterStatus(plan, machines, AbortSignal.timeout(30_000));
}
