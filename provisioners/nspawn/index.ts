/**
 * The nspawn provisioner: every node is a systemd-nspawn machine booting the guest image's root
 * filesystem through its own overlayfs upper layer (the shared base extracted once from the cached
 * qcow2), on the lab's bridge inside the lab's network namespace through a veth, with its NoCloud
 * seed in the upper layer and the topology's CPU and memory limits in cgroups the provider makes.
 * The machines accept SSH with the pinned host key like VMs, so the bootstrap is the same.
 *
 * Each node starts as one detached process chain, all exec'd into the same pid:
 * `sh start.sh` (joins the node's cgroups) → `unshare --mount --cgroup` (a private mount namespace
 * holding the overlay, so no mount outlives the node; a cgroup namespace rooted at the node's
 * cgroup) → `nsenter --net=LAB_NETNS` → `systemd-nspawn --boot ...`. Idempotent: a node whose
 * nspawn process runs is adopted.
 */
import { rm } from "node:fs/promises";
import { buildImage } from "../../images/build.ts";
import { isImagePath, loadRecipe } from "../../images/recipe.ts";
import { LabError } from "../../topology/errors.ts";
import type { PlannedNode } from "../../topology/plan.ts";
import { step } from "../../topology/progress.ts";
import { ensureHostKey, ensureLabSshKey } from "../keys.ts";
import { destroyLabNetwork } from "../network/netns.ts";
import { copyConsoleLogs, localNetworkStep, localStatuses, writeKnownHosts } from "../local-machines.ts";
import { MACHINE_READY_STEP, type Machine, type ProvisionContext, type Provisioner } from "../provisioner.ts";
import { consoleTail, sshTimeoutMs, waitSshReady } from "../../ssh/ready.ts";
import { findNspawnProcesses, powerOffMachine, shutdownMachine, stopMachines } from "./processes.ts";
import { ensureRootfs } from "./rootfs.ts";
import { ip, nodeNetnses, nodePaths, startNode, type NspawnRecord } from "./start.ts";

export { findNspawnProcesses, powerOffMachine, shutdownMachine, stopMachines } from "./processes.ts";
export { nodePaths, startScript, type NspawnRecord } from "./start.ts";

async function resolveRootfs(ctx: ProvisionContext): Promise<string> {
  const image = ctx.plan.image;
  if (isImagePath(image)) {
    throw new LabError({
      code: "NSPAWN_IMAGE_UNSUPPORTED",
      what: `provider nspawn boots the built-in guest image's root filesystem, not a disk image (${image})`,
      where: "spec.image",
      fix: "use image: debian-12 (or a recipe file) with provider nspawn, or provider qemu for a cloud image",
    });
  }
  const recipe = await loadRecipe(image);
  const img = await buildImage(recipe, { reporter: ctx.reporter, signal: ctx.signal });
  return await step(ctx.reporter, "image.rootfs", () => ensureRootfs(img.dir, img.paths.disk, ctx.signal), {
    message: `root filesystem of ${img.key} (extracted once)`,
  });
}

async function createNode(
  ctx: ProvisionContext,
  node: PlannedNode,
  lower: string,
  labKey: { privateKeyPath: string; publicKey: string },
  running: Map<string, number>,
): Promise<Machine> {
  const { state, reporter } = ctx;
  const hostKey = await ensureHostKey(state, node.name);
  const machine: Machine = {
    name: node.name,
    role: node.role,
    address: node.address,
    sharesHostClock: true,
    ssh: {
      host: node.address,
      port: 22,
      user: node.ssh.user,
      privateKeyPath: labKey.privateKeyPath,
      hostKey: hostKey.publicKey,
    },
  };
  const existing = running.get(node.name);
  if (existing) {
    reporter.event({
      step: "vm.start",
      node: node.name,
      state: "skipped",
      message: `already running (systemd-nspawn pid ${existing})`,
    });
  } else {
    await step(reporter, "vm.start", () => startNode(ctx, node, lower, labKey, hostKey), {
      node: node.name,
      message: `booting systemd-nspawn machine (${node.cpus} CPU, ${node.memoryMiB} MiB)`,
    });
  }
  const log = nodePaths(state, node.name).consoleLog;
  await step(
    reporter,
    MACHINE_READY_STEP,
    () =>
      waitSshReady(
        { node: node.name, ...machine.ssh },
        {
          timeoutMs: sshTimeoutMs(),
          intervalMs: 500,
          signal: ctx.signal,
          hints: { consoleLog: log, consoleTail: () => consoleTail(log) },
        },
      ),
    { node: node.name, message: `waiting for SSH on ${node.address} with the pinned host key` },
  );
  return machine;
}

function assertNode(ctx: ProvisionContext, node: string): void {
  if (!ctx.plan.nodes.some((n) => n.name === node))
    throw new LabError({
      code: "NODE_UNKNOWN",
      what: `lab ${ctx.plan.lab} has no node ${node}`,
      fix: `name one of ${ctx.plan.nodes.map((n) => n.name).join(", ")}`,
    });
}

export const nspawnProvisioner: Provisioner = {
  name: "nspawn",

  async create(ctx) {
    const { plan, state, reporter } = ctx;
    if (plan.provider.type !== "nspawn")
      throw new Error(`nspawn provisioner got a ${plan.provider.type} plan`);
    const lower = await step(reporter, "image", () => resolveRootfs(ctx), { message: `image ${plan.image}` });
    const labKey = await ensureLabSshKey(state);
    await localNetworkStep(ctx);
    const running = new Map((await findNspawnProcesses(plan.lab)).map((v) => [v.node, v.pid]));
    const machines = await Promise.all(plan.nodes.map((n) => createNode(ctx, n, lower, labKey, running)));
    await writeKnownHosts(state, machines);
    return machines;
  },

  async status(ctx) {
    const procs = new Map((await findNspawnProcesses(ctx.plan.lab)).map((v) => [v.node, v]));
    return localStatuses(
      ctx.plan,
      procs,
      (node) => ctx.state.readJson<NspawnRecord>(`nspawn/${node}/machine.json`),
      (address, proc) => `address ${address}, systemd-nspawn pid ${proc.pid}, uptime ${proc.uptimeSeconds}s`,
    );
  },

  async destroy(ctx) {
    await stopMachines(ctx.labName);
    for (const ns of await nodeNetnses(ctx.labName)) await ip(["netns", "del", ns]);
    await destroyLabNetwork(ctx.labName);
    await rm(ctx.state.path("nspawn"), { recursive: true, force: true });
  },

  async powerOff(ctx, node) {
    assertNode(ctx, node);
    await powerOffMachine(ctx.plan.lab, node);
  },

  async shutdown(ctx, node, opts) {
    assertNode(ctx, node);
    const r = await shutdownMachine(ctx.plan.lab, node, opts.timeoutMs);
    if (r.clean) return r;
    // What the machine's init was waiting for ("A stop job is running for ...") is on its console.
    const log = nodePaths(ctx.state, node).consoleLog;
    return { ...r, detail: `${r.detail}; its console (${log}) ended:\n${await consoleTail(log, 8)}` };
  },

  async collectLogs(ctx, dir) {
    await copyConsoleLogs(ctx.plan, dir, (node) => nodePaths(ctx.state, node).consoleLog);
  },
};
