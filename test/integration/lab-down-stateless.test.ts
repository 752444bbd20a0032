/**
 * `lab down NAME` with no state at all (deleted, or never written by a killed `up`): the lab's
 * QEMU processes are found by their -name, the namespace by name, the host link by alias.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { labDown } from "../../cli/lab-run.ts";
import { destroyLabNetwork, ensureLabNetwork, labHostLinks } from "../../provisioners/network/netns.ts";
import { findVmProcesses } from "../../provisioners/qemu/processes.ts";
import { RecordingReporter } from "../../topology/progress.ts";

const lab = `ds${process.pid}`;
const octet = 100 + (process.pid % 100);
let home = "";
const saved = { home: process.env.LAB_HOME, timeout: process.env.LAB_DOWN_TIMEOUT };

afterAll(async () => {
  for (const p of await findVmProcesses(lab)) process.kill(p.pid, "SIGKILL");
  await destroyLabNetwork(lab).catch(() => undefined);
  if (home) await rm(home, { recursive: true, force: true });
  process.env.LAB_HOME = saved.home;
  process.env.LAB_DOWN_TIMEOUT = saved.timeout;
});

describe("lab down without state", () => {
  it("finds and removes the lab's processes, namespace and host link", async () => {
    home = await mkdtemp(join(tmpdir(), "lab-down-"));
    process.env.LAB_HOME = home;
    process.env.LAB_DOWN_TIMEOUT = "0"; // no QMP socket here: straight to SIGKILL
    await ensureLabNetwork({ lab, cidr: `10.252.${octet}.0/24`, prefix: 24, gateway: `10.252.${octet}.1` });
    // Stand-ins for QEMU: a process whose argv looks like the VM's (argv[0] and -name).
    const fake = (node: string) =>
      execa(
        "bash",
        [
          "-c",
          `exec -a qemu-system-x86_64 "$0" -e "setTimeout(() => {}, 600000)" -- -name lab:${lab}/${node}`,
          process.execPath,
        ],
        {
          reject: false,
        },
      );
    const vms = [fake("master-1"), fake("worker-1")];
    for (let i = 0; i < 50 && (await findVmProcesses(lab)).length < 2; i++)
      await new Promise((r) => setTimeout(r, 100));
    expect((await findVmProcesses(lab)).map((p) => p.node).sort()).toEqual(["master-1", "worker-1"]);
    expect(existsSync(join(home, "labs", lab))).toBe(false);

    await labDown(lab, new RecordingReporter());

    await Promise.all(vms);
    expect(await findVmProcesses(lab)).toEqual([]);
    expect(existsSync(`/run/netns/lab-${lab}`)).toBe(false);
    expect(await labHostLinks(lab)).toEqual([]);
    expect(existsSync(join(home, "labs", lab))).toBe(false);
    await labDown(lab, new RecordingReporter()); // and again: nothing to do, no error
  });
});
