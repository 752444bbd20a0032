/**
 * The qemu provisioner: one daemonized QEMU process per VM inside the lab's network namespace,
 * booted from a qcow2 overlay on the cached base image with a NoCloud seed. Idempotent: a VM whose
 * process is already running is adopted, not restarted.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import { execa } from "execa";
import { buildImage } from "../../images/build.ts";
import { isImagePath, loadRecipe } from "../../images/recipe.ts";
import { inspectUserImage } from "../../images/user-image.ts";
import { LabError } from "../../topology/errors.ts";
import type { PlannedNode } from "../../topology/plan.ts";
import { step } from "../../topology/progress.ts";
import type { LabState } from "../../topology/state.ts";
import { ensureHostKey, ensureLabSshKey } from "../keys.ts";
import { destroyLabNetwork, ensureTap } from "../network/netns.ts";
import { copyConsoleLogs, localNetworkStep, localStatuses, writeKnownHosts } from "../local-machines.ts";
import { netnsName } from "../network/names.ts";
import { MACHINE_READY_STEP, type Machine, type ProvisionContext, type Provisioner } from "../provisioner.ts";
import { vmMachine, writeNodeSeed } from "../vm-node.ts";
import { consoleTail, sshTimeoutMs, waitSshReady } from "../../ssh/ready.ts";
import { decideAccel, probeAccel, type Accel } from "./accel.ts";
import { qemuArgv, type VmSpec } from "./argv.ts";
import { pidAlive } from "../host-processes.ts";
import { findVmProcesses } from "./processes.ts";
import { qmpCommand } from "./qmp.ts";
import { sleep } from "../../lib/sleep.ts";

/** Per-VM record in the lab state (`vms/NODE/vm.json`). */
export interface VmRecord {
  node: string;
  pid: number;
  accel: Accel;
  startedAt: string;
  address: string;
  consoleLog: string;
  qmpSocket: string;
}

interface BootImage {
  disk: string;
  format: string;
  kernel?: { path: string; initrd: string; cmdline: string };
}

export function vmDir(state: LabState, node: string): string {
  return state.path("vms", node);
}

function vmPaths(state: LabState, node: string) {
  const dir = vmDir(state, node);
  return {
    dir,
    disk: `${dir}/disk.qcow2`,
    seed: `${dir}/seed.iso`,
    consoleLog: `${dir}/console.log`,
    qmpSocket: `${dir}/qmp.sock`,
    pidFile: `${dir}/qemu.pid`,
    record: `vms/${node}/vm.json`,
  };
}

async function resolveImage(ctx: ProvisionContext): Promise<BootImage> {
  const image = ctx.plan.image;
  if (isImagePath(image)) {
    // A user cloud image boots through firmware with its own kernel; the overlay keeps it untouched.
    const user = await inspectUserImage(image);
    return { disk: user.path, format: user.format };
  }
  const recipe = await loadRecipe(image);
  const img = await buildImage(recipe, { reporter: ctx.reporter, signal: ctx.signal });
  return {
    disk: img.paths.disk,
    format: "qcow2",
    kernel: { path: img.paths.kernel, initrd: img.paths.initrd, cmdline: img.kernelCmdline },
  };
}

async function createVm(
  ctx: ProvisionContext,
  node: PlannedNode,
  image: BootImage,
  accel: Accel,
  labKey: { privateKeyPath: string; publicKey: string },
  running: Map<string, number>,
): Promise<Machine> {
  const { plan, state, reporter } = ctx;
  const p = vmPaths(state, node.name);
  const hostKey = await ensureHostKey(state, node.name);
  const machine = vmMachine(node, labKey.privateKeyPath, hostKey.publicKey);
  const existingPid = running.get(node.name);
  if (existingPid) {
    reporter.event({
      step: "vm.start",
      node: node.name,
      state: "skipped",
      message: `already running (pid ${existingPid})`,
    });
  } else {
    await step(
      reporter,
      "vm.start",
      async () => {
        await mkdir(p.dir, { recursive: true, mode: 0o700 });
        const tap = await ensureTap(plan.lab, node.index);
        if (!existsSync(p.disk)) {
          await execa("qemu-img", [
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            image.format,
            "-b",
            image.disk,
            p.disk,
            `${node.diskMiB}M`,
          ]);
        }
        await writeNodeSeed(p.seed, plan, node, labKey.publicKey, hostKey);
        await rm(p.consoleLog, { force: true });
        await rm(p.qmpSocket, { force: true });
        const spec: VmSpec = {
          lab: plan.lab,
          node: node.name,
          accel,
          ...(process.env.LAB_QEMU_CPU ? { cpuModel: process.env.LAB_QEMU_CPU } : {}),
          cpus: node.cpus,
          memoryMiB: node.memoryMiB,
          disk: p.disk,
          seed: p.seed,
          tap,
          mac: node.mac,
          ...(image.kernel ? { kernel: image.kernel } : {}),
          consoleLog: p.consoleLog,
          qmpSocket: p.qmpSocket,
          pidFile: p.pidFile,
        };
        try {
          await execa("ip", ["netns", "exec", netnsName(plan.lab), "qemu-system-x86_64", ...qemuArgv(spec)], {
            stdin: "ignore",
          });
        } catch (err) {
          throw new LabError({
            code: "VM_START_FAILED",
            what: `QEMU did not start for node ${node.name}: ${((err as { stderr?: string }).stderr ?? String(err)).trim()}`,
            where: node.name,
            fix: "check that qemu-system-x86 is installed (`lab doctor`) and that the host has free memory",
            source: "host",
          });
        }
        const pid = Number((await readFile(p.pidFile, "utf8")).trim());
        const record: VmRecord = {
          node: node.name,
          pid,
          accel,
          startedAt: new Date().toISOString(),
          address: node.address,
          consoleLog: p.consoleLog,
          qmpSocket: p.qmpSocket,
        };
        await state.writeJson(p.record, record);
      },
      { node: node.name, message: `booting (${accel}, ${node.cpus} vCPU, ${node.memoryMiB} MiB)` },
    );
  }
  await step(
    reporter,
    MACHINE_READY_STEP,
    () =>
      waitSshReady(
        { node: node.name, ...machine.ssh },
        {
          timeoutMs: sshTimeoutMs(),
          intervalMs: 1500,
          signal: ctx.signal,
          hints: { consoleLog: p.consoleLog, consoleTail: () => consoleTail(p.consoleLog) },
        },
      ),
    { node: node.name, message: `waiting for SSH on ${node.address} with the pinned host key` },
  );
  return machine;
}

export const qemuProvisioner: Provisioner = {
  name: "qemu",

  async create(ctx) {
    const { plan, state, reporter } = ctx;
    const provider = plan.provider;
    if (provider.type !== "qemu") throw new Error(`qemu provisioner got a ${provider.type} plan`);
    const decision = decideAccel(provider.accel, await probeAccel());
    if (decision.notice) reporter.notice(decision.notice);
    const image = await step(reporter, "image", () => resolveImage(ctx), { message: `image ${plan.image}` });
    const labKey = await ensureLabSshKey(state);
    await localNetworkStep(ctx);
    const running = new Map((await findVmProcesses(plan.lab)).map((v) => [v.node, v.pid]));
    const machines = await Promise.all(
      plan.nodes.map((n) => createVm(ctx, n, image, decision.accel, labKey, running)),
    );
    await writeKnownHosts(state, machines);
    return machines;
  },

  async status(ctx) {
    const procs = new Map((await findVmProcesses(ctx.plan.lab)).map((v) => [v.node, v]));
    return localStatuses(
      ctx.plan,
      procs,
      (node) => ctx.state.readJson<VmRecord>(`vms/${node}/vm.json`),
      (address, proc, rec) =>
        `address ${address}, pid ${proc.pid}, uptime ${proc.uptimeSeconds}s, accel ${rec?.accel ?? "?"}`,
    );
  },

  async destroy(ctx) {
    await stopVms(ctx.labName, ctx.state);
    await destroyLabNetwork(ctx.labName);
    await rm(ctx.state.path("vms"), { recursive: true, force: true });
  },

  async shutdown(ctx, node, opts) {
    return shutdownVm(ctx.state, ctx.plan.lab, node, opts.timeoutMs);
  },

  async collectLogs(ctx, dir) {
    await copyConsoleLogs(ctx.plan, dir, (node) => vmPaths(ctx.state, node).consoleLog);
  },
};

/**
 * ACPI power button through QMP (`system_powerdown`: the guest's systemd shuts down in order and
 * QEMU exits), then at the deadline QMP `quit` and SIGKILL, saying what was left.
 */
export async function shutdownVm(
  state: LabState,
  lab: string,
  node: string,
  timeoutMs: number,
): Promise<{ clean: boolean; detail?: string }> {
  const vm = (await findVmProcesses(lab)).find((v) => v.node === node);
  if (!vm) return { clean: true, detail: "not running" };
  const sock = vmPaths(state, node).qmpSocket;
  const asked = await qmpCommand(sock, "system_powerdown").then(
    () => undefined,
    (err: Error) => err.message,
  );
  const deadline = Date.now() + (asked ? 0 : timeoutMs);
  while (Date.now() < deadline && pidAlive(vm.pid)) await sleep(250);
  if (!pidAlive(vm.pid)) return { clean: true };
  await qmpCommand(sock, "quit").catch(() => undefined);
  const killAt = Date.now() + 3000;
  while (Date.now() < killAt && pidAlive(vm.pid)) await sleep(100);
  if (pidAlive(vm.pid)) {
    try {
      process.kill(vm.pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
  return {
    clean: false,
    detail: asked
      ? `QMP system_powerdown failed (${asked}); quit QEMU pid ${vm.pid}`
      : `QEMU pid ${vm.pid} still running ${Math.round(timeoutMs / 1000)} s after system_powerdown; quit it`,
  };
}

function downTimeoutMs(): number {
  const s = Number(process.env.LAB_DOWN_TIMEOUT);
  return (Number.isFinite(s) && s >= 0 ? s : 10) * 1000;
}

/** ACPI powerdown through QMP, then SIGKILL for whatever is still running after the timeout. */
export async function stopVms(lab: string, state: LabState): Promise<void> {
  const procs = await findVmProcesses(lab);
  if (procs.length === 0) return;
  const timeout = downTimeoutMs();
  if (timeout > 0) {
    await Promise.all(
      procs.map(async (v) => {
        const sock = vmPaths(state, v.node).qmpSocket;
        if (!existsSync(sock)) return;
        await qmpCommand(sock, "system_powerdown").catch(() => undefined);
      }),
    );
  }
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline && procs.some((v) => pidAlive(v.pid))) await sleep(250);
  for (const v of procs) {
    if (pidAlive(v.pid)) {
      try {
        process.kill(v.pid, "SIGKILL");
      } catch {
        // gone meanwhile
      }
    }
  }
  const killDeadline = Date.now() + 5000;
  while (Date.now() < killDeadline && procs.some((v) => pidAlive(v.pid))) await sleep(100);
}
