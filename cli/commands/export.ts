import type { Command } from "commander";
import { mkdir, writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { collectMachineLogs } from "../../bootstrap/logs.ts";
import { etcdClusterStatus } from "../../bootstrap/status.ts";
import { provisionerFor } from "../../provisioners/index.ts";
import type { Machine } from "../../provisioners/provisioner.ts";
import { LabError } from "../../topology/errors.ts";
import type { Plan } from "../../topology/plan.ts";
import { silentReporter } from "../../topology/progress.ts";
import { LabState } from "../../topology/state.ts";
import { labStatus } from "../lab-run.ts";
import { printJson, type GlobalOptions } from "../output.ts";
import { resolveLabName } from "./lab-name.ts";

/** What `lab export logs` wrote and what it could not get, per part. */
export interface ExportReport {
  lab: string;
  dir: string;
  written: string[];
  missing: { part: string; why: string }[];
}

const why = (err: unknown) =>
  err instanceof LabError ? err.what : err instanceof Error ? err.message : String(err);

/**
 * Gathers everything needed to debug a lab into `dir`, best effort: a part that fails (a node that
 * does not answer, a status that cannot be asked) is named in the report and in `dir/MISSING.txt`.
 */
export async function exportLogs(labName: string, dir: string): Promise<ExportReport> {
  const state = new LabState(labName);
  const plan = await state.readJson<Plan>("plan.json");
  if (!plan)
    throw new LabError({
      code: "NO_LAB",
      what: `lab ${labName} does not exist (no state), nothing to export`,
      fix: "give the lab's name (`lab export logs DIR --lab NAME`) or its topology (-f)",
      source: "user",
    });
  await mkdir(dir, { recursive: true });
  const report: ExportReport = { lab: labName, dir, written: [], missing: [] };
  const attempt = async (part: string, fn: () => Promise<void>) => {
    try {
      await fn();
      report.written.push(part);
    } catch (err) {
      report.missing.push({ part, why: why(err) });
    }
  };
  await attempt("plan.json", () => writeFile(`${dir}/plan.json`, JSON.stringify(plan, null, 2) + "\n"));
  await attempt("bootstrap.json", async () => {
    const b = await state.readJson("bootstrap.json");
    if (!b) throw new Error("the bootstrap has not run");
    await writeFile(`${dir}/bootstrap.json`, JSON.stringify(b, null, 2) + "\n");
  });
  const machines = (await state.readJson<Machine[]>("machines.json")) ?? [];
  await attempt("status.json", async () => {
    const { machines: rows } = await labStatus(labName, silentReporter);
    const etcd = machines.length ? await etcdClusterStatus(plan, machines).catch(() => undefined) : undefined;
    await writeFile(
      `${dir}/status.json`,
      JSON.stringify(
        { lab: labName, provider: plan.provider.type, machines: rows, ...(etcd ? { etcd } : {}) },
        null,
        2,
      ) + "\n",
    );
  });
  const provisioner = provisionerFor(plan.provider.type);
  if (provisioner.collectLogs)
    await attempt("consoles", () =>
      provisioner.collectLogs!({ plan, state, reporter: silentReporter }, `${dir}/consoles`),
    );
  if (!machines.length)
    report.missing.push({ part: "journals", why: "no machine was ever reachable (machines.json is empty)" });
  else {
    const r = await collectMachineLogs(machines, `${dir}/nodes`);
    for (const n of r.collected) report.written.push(`nodes/${n}`);
    for (const n of r.failed)
      report.missing.push({ part: `nodes/${n}`, why: `unreachable, see nodes/${n}/error.txt` });
  }
  if (report.missing.length)
    await writeFile(`${dir}/MISSING.txt`, report.missing.map((m) => `${m.part}: ${m.why}`).join("\n") + "\n");
  return report;
}

export function registerExport(program: Command): void {
  const exp = program.command("export").description("export a lab's data for debugging");
  exp
    .command("logs <DIR>")
    .description(
      "every node's console log and journals of lab's units (etcd, lab-server, lab-agent, keepalived, containerd), `lab status --json` and the plan, into DIR; best effort on a broken lab",
    )
    .option("-f, --file <FILE>", "topology file naming the lab")
    .option("--lab <NAME>", "lab name (instead of -f)")
    .action(async (dirArg: string, opts: { file?: string; lab?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const labName = await resolveLabName(opts.lab, opts.file);
      const r = await exportLogs(labName, resolve(dirArg));
      if (g.json) {
        printJson(r);
        return;
      }
      process.stdout.write(`exported lab ${labName} to ${r.dir}: ${r.written.join(", ")}\n`);
      for (const m of r.missing) process.stdout.write(`  could not get ${m.part}: ${m.why}\n`);
    });
}
