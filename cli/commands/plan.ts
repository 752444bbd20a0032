import type { Command } from "commander";
import { loadTopology } from "../../topology/load.ts";
import { plan, type Plan } from "../../topology/plan.ts";
import { printJson, type GlobalOptions } from "../output.ts";

export function registerPlan(program: Command): void {
  program
    .command("plan")
    .description(
      "print the computed plan (names, roles, addresses, MACs, VIP, resources, pod CIDRs); touches nothing",
    )
    .option("-f, --file <FILE>", "topology file (default: ./lab.yaml, else the built-in default)")
    .action(async (opts: { file?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const { lab } = await loadTopology(opts.file);
      const p = plan(lab);
      if (g.json) printJson(p);
      else process.stdout.write(renderPlan(p));
    });
}

export function renderPlan(p: Plan): string {
  const pv = p.provider;
  const how =
    pv.type === "qemu"
      ? `, accel ${pv.accel}`
      : pv.type === "libvirt"
        ? `, ${pv.uri}${pv.network?.bridge ? `, bridge ${pv.network.bridge}` : ""}`
        : "";
  // A column for the hypervisor only when nodes are spread over several (query left out: keyfile= etc.).
  const perNode = pv.type === "libvirt" && p.nodes.some((n) => n.uri);
  const lines = [
    `lab ${p.lab} (${pv.type}${how}, image ${p.image})`,
    `network ${p.network.cidr}${p.network.derived ? " (derived from the lab name)" : ""}  gateway ${p.network.gateway || "-"}  API VIP ${p.network.vip}:${p.cluster.apiServerPort}`,
    `cluster pods ${p.cluster.podCIDR}  services ${p.cluster.serviceCIDR}  domain ${p.cluster.domain}`,
    "",
  ];
  const rows = [
    [
      "NODE",
      "ROLE",
      "ADDRESS",
      "MAC",
      "CPUS",
      "MEMORY",
      "DISK",
      "POD CIDR",
      ...(perNode ? ["HYPERVISOR"] : []),
    ],
  ];
  for (const n of p.nodes) {
    rows.push([
      n.name,
      n.role,
      n.address,
      n.mac,
      String(n.cpus),
      `${n.memoryMiB}Mi`,
      `${n.diskMiB}Mi`,
      n.podCIDR,
      ...(perNode && pv.type === "libvirt" ? [(n.uri ?? pv.uri).split("?")[0]!] : []),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows)
    lines.push(
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    );
  return lines.join("\n") + "\n";
}
