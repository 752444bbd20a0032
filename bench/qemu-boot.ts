/**
 * Boot benchmark (not a test): time from `lab up` to every VM SSH-ready for N VMs, beside one
 * VM measured in the same run; per-VM QEMU RSS; and the ratio of the N-VM time to the CPU floor
 * (single-VM time × N / cores). Targets on 2 cores under TCG: ratio ≤ 1.2, 5 VMs in < 2 min.
 *
 *   LAB_IMAGE_CACHE=/var/tmp/lab-image-cache npx tsx bench/qemu-boot.ts 1 3 5
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { labDown, labUp } from "../cli/lab-run.ts";
import { findVmProcesses } from "../provisioners/qemu/processes.ts";
import { RecordingReporter } from "../topology/progress.ts";
import { LabFile } from "../topology/schema.ts";

const counts = process.argv
  .slice(2)
  .map(Number)
  .filter((n) => n > 0);
if (!counts.includes(1)) counts.unshift(1);
// A throwaway LAB_HOME unless one is given (then it is left alone).
const ownHome = !process.env.LAB_HOME;
if (ownHome) process.env.LAB_HOME = await mkdtemp(join(tmpdir(), "lab-bench-"));
const cores = availableParallelism();

async function rssMiB(pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, "utf8"));
  return m ? Math.round(Number(m[1]) / 1024) : 0;
}

const results: { n: number; seconds: number; rss: number[] }[] = [];
for (const n of counts) {
  const name = `bench${process.pid % 10000}n${n}`;
  const lab = LabFile.parse({
    apiVersion: "lab/v1alpha1",
    kind: "Lab",
    metadata: { name },
    spec: {
      resources: { cpus: 1, memory: "768Mi", disk: "4Gi" },
      nodes: Array.from({ length: n }, (_, i) => ({
        name: `vm-${i + 1}`,
        role: i === 0 ? "master" : "worker",
      })),
    },
  });
  const reporter = new RecordingReporter();
  const started = Date.now();
  try {
    await labUp({ lab, source: "bench" }, reporter);
    const seconds = (Date.now() - started) / 1000;
    const rss = await Promise.all((await findVmProcesses(name)).map((p) => rssMiB(p.pid)));
    results.push({ n, seconds, rss });
    console.log(`${n} VM(s): all SSH-ready in ${seconds.toFixed(1)} s; QEMU RSS MiB: ${rss.join(", ")}`);
  } finally {
    await labDown(name, reporter, "qemu");
  }
}
const single = results.find((r) => r.n === 1)!.seconds;
console.log(`\ncores ${cores}; single VM ${single.toFixed(1)} s`);
console.log("N  seconds  floor(s)  ratio  max RSS MiB");
for (const r of results) {
  const floor = (single * r.n) / cores;
  const ratio = r.n === 1 ? 1 : r.seconds / Math.max(floor, single);
  console.log(
    `${String(r.n).padEnd(2)} ${r.seconds.toFixed(1).padStart(7)}  ${floor.toFixed(1).padStart(8)}  ${ratio.toFixed(2).padStart(5)}  ${Math.max(...r.rss)}`,
  );
}
if (ownHome) await rm(process.env.LAB_HOME!, { recursive: true, force: true }).catch(() => undefined);
