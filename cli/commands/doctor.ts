import { accessSync, constants, existsSync } from "node:fs";
import { delimiter, join } from "node:path";
import type { Command } from "commander";
import { execa } from "execa";
import { HOST_TOOLS, type HostTool, type ToolGroup } from "../../provisioners/host-tools.ts";
import { kvmWhy, NSPAWN_HINT, probeAccel } from "../../provisioners/qemu/accel.ts";
import { LabError } from "../../topology/errors.ts";
import { printJson, type GlobalOptions } from "../output.ts";

export interface ToolCheck extends HostTool {
  found: string | null;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Finds a command on PATH (plus the sbin directories, which a non-root PATH may lack). */
export function which(command: string, env: NodeJS.ProcessEnv = process.env): string | null {
  // An absolute path names a file a package brings (a header, a plugin), not always an executable.
  if (command.includes("/")) return existsSync(command) ? command : null;
  const dirs = (env.PATH ?? "").split(delimiter).concat(["/usr/sbin", "/sbin", "/usr/local/sbin"]);
  for (const dir of dirs) {
    if (dir && isExecutable(join(dir, command))) return join(dir, command);
  }
  return null;
}

export function checkTools(groups: ToolGroup[]): ToolCheck[] {
  return HOST_TOOLS.filter((t) => groups.includes(t.group)).map((t) => ({ ...t, found: which(t.command) }));
}

const GROUPS: ToolGroup[] = ["lab", "libvirt", "test"];

function parseGroups(value: string): ToolGroup[] {
  const groups = value.split(",").map((g) => g.trim()) as ToolGroup[];
  const bad = groups.filter((g) => !GROUPS.includes(g));
  if (bad.length) {
    throw new LabError({
      code: "BAD_FLAG",
      what: `--group: unknown group ${bad.map((b) => `"${b}"`).join(", ")}`,
      fix: `use a comma-separated list of ${GROUPS.join(", ")}`,
    });
  }
  return groups;
}

export function registerDoctor(program: Command): void {
  program
    .command("doctor")
    .description("check the host tools lab needs; --fix installs the missing ones with apt-get (as root)")
    .option("--fix", "install missing packages with apt-get")
    .option("--group <GROUPS>", "what to check: lab (run labs), libvirt, test (run the test suites)", "lab")
    .action(async (opts: { fix?: boolean; group: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const groups = parseGroups(opts.group);
      let checks = checkTools(groups);
      let missing = checks.filter((c) => !c.found);
      if (opts.fix && missing.length > 0) {
        if (process.getuid?.() !== 0) {
          throw new LabError({
            code: "NOT_ROOT",
            what: "lab doctor --fix installs packages with apt-get and must run as root",
            fix: `run: sudo apt-get install -y ${[...new Set(missing.map((m) => m.pkg))].join(" ")}`,
            source: "host",
          });
        }
        const pkgs = [...new Set(missing.map((m) => m.pkg))];
        if (!g.json) process.stderr.write(`installing: ${pkgs.join(" ")}\n`);
        try {
          await execa(
            "apt-get",
            [
              "install",
              "-y",
              "-q",
              "--no-install-recommends",
              "-o",
              "Dpkg::Options::=--force-confold",
              ...pkgs,
            ],
            {
              env: { DEBIAN_FRONTEND: "noninteractive" },
              stdout: g.json ? "ignore" : "inherit",
              stderr: "inherit",
            },
          );
        } catch (err) {
          throw new LabError({
            code: "APT_FAILED",
            what: `apt-get install failed: ${(err as Error).message.split("\n")[0]}`,
            fix: "run `apt-get update` first, then `lab doctor --fix` again",
            source: "host",
          });
        }
        checks = checkTools(groups);
        missing = checks.filter((c) => !c.found);
      }
      const probe = await probeAccel();
      const kvm = probe.kvmOpens && probe.cpuVirt;
      const accel = kvm
        ? { kvm: true }
        : { kvm: false, why: kvmWhy(probe), notice: `KVM unusable (${kvmWhy(probe)}). ${NSPAWN_HINT}` };
      if (g.json) {
        printJson({ ok: missing.length === 0, tools: checks, accel });
      } else {
        const w = Math.max(...checks.map((c) => c.command.length));
        for (const c of checks) {
          const mark = c.found ? "ok     " : "MISSING";
          process.stdout.write(
            `${mark}  ${c.command.padEnd(w)}  ${c.found ? c.found : `apt-get install ${c.pkg}`}  (${c.why})\n`,
          );
        }
        process.stdout.write(
          missing.length === 0
            ? `all ${checks.length} tools found\n`
            : `${missing.length} missing: run \`lab doctor --fix --group ${opts.group}\` as root\n`,
        );
        if (accel.notice) process.stdout.write(`note: ${accel.notice}\n`);
      }
      if (missing.length > 0) process.exitCode = 2;
    });
}
