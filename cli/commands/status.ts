import type { Command } from "commander";
import { readFile } from "node:fs/promises";
import {
  apiStatus,
  etcdClusterStatus,
  type ApiStatus,
  type EtcdMemberStatus,
} from "../../bootstrap/status.ts";
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
      const { plan, machines, state: labState, stoppedAt } = await labStatus(labName, silentReporter);
      const rows = machines.map((m) => {
        const node = plan?.nodes.find((n) => n.name === m.name);
        return { name: m.name, role: node?.role, address: node?.address, state: m.state, detail: m.detail };
      });
      // etcd members, asked over SSH on a running master (only once the bootstrap installed etcd).
      let etcd: EtcdMemberStatus[] | undefined;
      const state = new LabState(labName);
      const reachable = (await state.readJson<Machine[]>("machines.json")) ?? [];
      const bootstrap = await state.readJson<{ steps: Record<string, unknown> }>("bootstrap.json");
      // A stopped lab (on bare metal: its services) has no etcd or API to ask.
      const up = labState !== "stopped" && machines.some((m) => m.state === "running");
      if (plan && bootstrap?.steps.etcd && up) etcd = await etcdClusterStatus(plan, reachable);
      // Node readiness from the API (through the hypervisor's jump when the lab is behind one).
      let api: ApiStatus | undefined;
      if (plan && bootstrap?.steps["control-plane"] && up) {
        const pem = (f: string) => readFile(state.path("pki", f), "utf8");
        api = await apiStatus(plan, reachable, {
          ca: await pem("ca.crt"),
          cert: await pem("admin.crt"),
          key: await pem("admin.key"),
        });
      }
      if (g.json) {
        printJson({
          lab: labName,
          exists: plan !== undefined,
          provider: plan?.provider.type,
          state: labState,
          ...(stoppedAt ? { stoppedAt } : {}),
          machines: rows,
          ...(etcd ? { etcd } : {}),
          ...(api ? { api } : {}),
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
      const since =
        labState === "stopped" && stoppedAt ? ` since ${stoppedAt} (\`lab start ${labName}\`)` : "";
      process.stdout.write(
        `lab ${labName} (${plan.provider.type}, ${plan.network.cidr}): ${labState}${since}\n`,
      );
      for (const r of table)
        process.stdout.write(
          r
            .map((c, i) => c.padEnd(widths[i]!))
            .join("  ")
            .trimEnd() + "\n",
        );
      if (etcd) {
        process.stdout.write("\nETCD MEMBER  ENDPOINT  HEALTH  LEADER\n");
        for (const e of etcd)
          process.stdout.write(
            `${e.name}  ${e.endpoint}  ${e.healthy ? "healthy" : `unhealthy${e.error ? ` (${e.error})` : ""}`}  ${e.leader ? "leader" : ""}`.trimEnd() +
              "\n",
          );
      }
      if (api) {
        const via = api.via ? ` (through ${api.via})` : "";
        process.stdout.write(
          api.nodes
            ? `\nAPI ${api.endpoint}${via}: ${api.nodes.ready.length}/${plan.nodes.length} nodes Ready${api.nodes.notReady.length ? `; not Ready: ${api.nodes.notReady.map((n) => `${n.name} (${n.why})`).join(", ")}` : ""}\n`
            : `\nAPI ${api.endpoint}${via}: not answering (${api.error})\n`,
        );
      }
    });
}
