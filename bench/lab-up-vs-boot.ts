/**
 * `lab up` to all nodes Ready for the default topology, beside the bare boot of the same VMs in the
 * same run: first `lab up --machines-only` (boot to SSH: the floor), then `lab up` on those running
 * VMs (the bootstrap: pki, clock, etcd, control plane, VIP, nodes, wait-ready). Prints both and the
 * ratio (lab up = boot + bootstrap) / boot; the target is at most 1.5x. Always `lab down` at the end.
 * Several topologies are measured one after the other in the same run, with the ratio of their
 * totals: `bench/lab-up-vs-boot.ts examples/default.yaml examples/nspawn.yaml` puts QEMU VMs and
 * nspawn machines side by side.
 * Run (VMs: take the shared lock): flock /work/wt/vm.lock npx tsx bench/lab-up-vs-boot.ts [TOPOLOGY...]
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";

const repo = resolve(import.meta.dirname, "..");
// One or more topologies, measured one after the other in this run (e.g. the default lab on QEMU
// and the same lab on nspawn machines: examples/default.yaml examples/nspawn.yaml).
const topologies = (
  process.argv.length > 2 ? process.argv.slice(2) : [join(repo, "examples/default.yaml")]
).map((t) => resolve(t));
const dir = await mkdtemp(join(tmpdir(), "lab-bench-"));
const env = {
  ...process.env,
  LAB_HOME: join(dir, "home"),
  LAB_IMAGE_CACHE: process.env.LAB_IMAGE_CACHE || "/var/tmp/lab-image-cache",
  LAB_SSH_TIMEOUT: process.env.LAB_SSH_TIMEOUT || "420",
};
const lab = (args: string[]) =>
  execa(process.execPath, [join(repo, "bin/lab.js"), ...args], { cwd: dir, env, all: true });
const timed = async (args: string[]) => {
  const t0 = Date.now();
  await lab(args);
  return (Date.now() - t0) / 1000;
};
const row = (what: string, s: number) => `${what.padEnd(34)} ${s.toFixed(1).padStart(7)} s`;

interface Measured {
  topology: string;
  provider: string;
  total: number;
}

async function measure(topology: string, i: number): Promise<Measured> {
  const name = `bench${process.pid % 10000}${topologies.length > 1 ? `x${i}` : ""}`;
  const text = (await readFile(topology, "utf8")).replace(/^(\s*name:\s*)\S+/m, `$1${name}`);
  const provider = /^\s*type:\s*(\S+)/m.exec(text)?.[1] ?? "qemu";
  await writeFile(join(dir, "lab.yaml"), text);
  try {
    const boot = await timed(["up", "-f", "lab.yaml", "--machines-only"]);
    const bootstrap = await timed(["up", "-f", "lab.yaml"]);
    const rerun = await timed(["up", "-f", "lab.yaml"]);
    const total = boot + bootstrap;
    process.stdout.write(
      [
        `lab up vs bare boot (${name}, ${topology.replace(repo + "/", "")}, provider ${provider})`,
        row("boot (lab up --machines-only)", boot),
        row("bootstrap (lab up on those machines)", bootstrap),
        row("lab up to all nodes Ready", total),
        row("rerun (lab up, nothing to change)", rerun),
        `ratio lab up / boot: ${(total / boot).toFixed(2)}x (target <= 1.5x)`,
      ].join("\n") + "\n",
    );
    return { topology, provider, total };
  } finally {
    await lab(["down", name]).catch((err: unknown) =>
      process.stderr.write(`lab down ${name}: ${String(err)}\n`),
    );
  }
}

try {
  // The guest image is built (or found) outside the measurement.
  await lab(["image", "build"]).catch(() => undefined);
  const results: Measured[] = [];
  for (const [i, t] of topologies.entries()) results.push(await measure(t, i));
  if (results.length > 1) {
    const base = results[0]!;
    for (const r of results.slice(1))
      process.stdout.write(
        `lab up to Ready, ${base.provider} / ${r.provider}: ${(base.total / r.total).toFixed(2)}x (${base.total.toFixed(1)} s vs ${r.total.toFixed(1)} s)\n`,
      );
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
