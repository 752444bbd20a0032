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
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import {
  chmod,
  chown,
  copyFile,
  link,
  mkdir,
  open,
  readFile,
  readdir,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { dirname, join } from "node:path";
import { execa } from "execa";
import { buildImage } from "../../images/build.ts";
import { isImagePath, loadRecipe } from "../../images/recipe.ts";
import { LabError } from "../../topology/errors.ts";
import type { Plan, PlannedNode } from "../../topology/plan.ts";
import { step } from "../../topology/progress.ts";
import type { LabState } from "../../topology/state.ts";
import { HOST_PATHS } from "../../templates/paths.ts";
import { ensureHostKey, ensureLabSshKey } from "../keys.ts";
import { BRIDGE, netnsName } from "../network/names.ts";
import { destroyLabNetwork, ensureLabNetwork } from "../network/netns.ts";
import type { Machine, MachineStatus, ProvisionContext, Provisioner } from "../provisioner.ts";
import { pidAlive } from "../qemu/processes.ts";
import { consoleTail, sshTimeoutMs, waitSshReady } from "../../ssh/ready.ts";
import { ensureNodeCgroups, hierarchies, labCgroupPids, removeLabCgroups } from "./cgroups.ts";
import type { SeedInput } from "../../cloud-init/seed.ts";
import { directFiles, homeDirs, nspawnSeed, upperFiles, UPPER_LINKS, type DirectFile } from "./guest.ts";
import {
  nodeFromNspawnArgv,
  nodeMarker,
  nodeNetns,
  nodeNetnsPrefix,
  nspawnArgv,
  vethNames,
} from "./names.ts";
import { ensureRootfs } from "./rootfs.ts";

/** Per-node record in the lab state (`nspawn/NODE/machine.json`). */
export interface NspawnRecord {
  node: string;
  pid: number;
  startedAt: string;
  address: string;
  consoleLog: string;
}

export function nodePaths(state: LabState, node: string) {
  const dir = state.path("nspawn", node);
  return {
    dir,
    upper: `${dir}/upper`,
    work: `${dir}/work`,
    root: `${dir}/root`,
    containerd: `${dir}/containerd`,
    start: `${dir}/start.sh`,
    consoleLog: `${dir}/console.log`,
    record: `nspawn/${node}/machine.json`,
  };
}

export interface NspawnProcess {
  pid: number;
  node: string;
  uptimeSeconds: number;
}

/** The lab's nspawn processes, found from /proc by their marker (no state needed). */
export async function findNspawnProcesses(lab: string): Promise<NspawnProcess[]> {
  const out: NspawnProcess[] = [];
  const uptime = Number((await readFile("/proc/uptime", "utf8")).split(" ")[0]);
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = (await readFile(`/proc/${entry}/cmdline`, "utf8")).split("\0").filter(Boolean);
      const node = nodeFromNspawnArgv(argv, lab);
      if (!node) continue;
      const stat = await readFile(`/proc/${entry}/stat`, "utf8");
      const start = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
      out.push({ pid: Number(entry), node, uptimeSeconds: Math.max(0, Math.round(uptime - start / 100)) });
    } catch {
      // ended while we looked
    }
  }
  return out;
}

const sq = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

/** The node's start script (pure): join cgroups, private mount + cgroup namespaces, overlay, nspawn. */
export function startScript(o: {
  procs: string[];
  cgroupMounts: { path: string; v2: boolean; options: string }[];
  lower: string;
  upper: string;
  work: string;
  root: string;
  source: string;
  argv: string[];
}): string {
  const inner = [
    "set -e",
    // A fresh mount of each hierarchy inside the new cgroup namespace shows the node's cgroup as
    // its root: nspawn (and everything in the machine) sees only the node's subtree.
    ...o.cgroupMounts.map(
      (m) =>
        `umount -l ${sq(m.path)}; ` +
        (m.v2
          ? `mount -t cgroup2 cgroup2 ${sq(m.path)}`
          : `mount -t cgroup -o ${sq(m.options)} cgroup ${sq(m.path)}`),
    ),
    `mount -t overlay ${sq(o.source)} -o ${sq(`lowerdir=${o.lower},upperdir=${o.upper},workdir=${o.work}`)} ${sq(o.root)}`,
    `exec ${o.argv.map(sq).join(" ")}`,
  ].join("\n");
  return [
    "#!/bin/sh",
    "# Written by lab's nspawn provider; one node's process chain (all exec'd into one pid).",
    "set -e",
    ...o.procs.map((p) => `echo $$ > ${sq(p)}`),
    `exec unshare --mount --cgroup --propagation private /bin/sh -c ${sq(inner)}`,
    "",
  ].join("\n");
}

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

async function ip(args: string[]): Promise<void> {
  try {
    await execa("ip", args, { stdin: "ignore" });
  } catch (err) {
    throw new LabError({
      code: "NETWORK_FAILED",
      what: `ip ${args.join(" ")} failed: ${((err as { stderr?: string }).stderr ?? String(err)).trim()}`,
      fix: "lab networking needs root (CAP_NET_ADMIN)",
      source: "host",
    });
  }
}

/**
 * The machine's network: its own namespace holding eth0 (with the planned MAC), whose veth peer
 * sits on the lab's bridge. Made fresh at every start; nspawn joins the namespace.
 */
async function ensureNodeNetwork(plan: Plan, node: PlannedNode): Promise<string> {
  const ns = netnsName(plan.lab);
  const own = nodeNetns(plan.lab, node.name);
  const { bridgeSide, guestSide } = vethNames(node.index);
  await execa("ip", ["netns", "del", own], { reject: false, stdin: "ignore" });
  await execa("ip", ["-n", ns, "link", "del", bridgeSide], { reject: false, stdin: "ignore" });
  await ip(["netns", "add", own]);
  await ip(["-n", ns, "link", "add", bridgeSide, "type", "veth", "peer", "name", guestSide]);
  await ip(["-n", ns, "link", "set", guestSide, "address", node.mac]);
  await ip(["-n", ns, "link", "set", guestSide, "netns", own]);
  await ip(["-n", own, "link", "set", guestSide, "name", "eth0"]);
  await ip(["-n", ns, "link", "set", bridgeSide, "master", BRIDGE, "up"]);
  return `/run/netns/${own}`;
}

/** The machines' own namespaces of a lab (found by name). */
async function nodeNetnses(lab: string): Promise<string[]> {
  const entries = await readdir("/run/netns").catch(() => [] as string[]);
  return entries.filter((e) => e.startsWith(nodeNetnsPrefix(lab)));
}

async function writeUpper(upper: string, files: DirectFile[]): Promise<void> {
  for (const f of files) {
    const p = join(upper, f.path);
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, f.content, { mode: f.mode });
    await chmod(p, f.mode);
    if (f.owner) await chown(p, f.owner[0], f.owner[1]);
  }
  for (const l of UPPER_LINKS) {
    const p = join(upper, l.path);
    await mkdir(dirname(p), { recursive: true });
    await rm(p, { force: true });
    await symlink(l.target, p);
  }
}

const DEVICES = ["/dev/net/tun", "/dev/fuse"];

/** Where the bootstrap installs the Node runtime on a node (bootstrap/artifacts.ts nodeRuntime). */
export const NODE_RUNTIME_PATH = `${HOST_PATHS.bin}/node`;

/**
 * The Node runtime the bootstrap would upload (~100 MB, the same file for every node) is put in
 * the upper layer beforehand: a hard link to one copy per lab. The bootstrap is unchanged: it finds
 * the file with the right sha256 and skips the transfer, which was the largest part of `lab up`.
 */
async function placeNodeRuntime(state: LabState, upper: string): Promise<void> {
  const shared = await sharedRuntime(state);
  const target = join(upper, NODE_RUNTIME_PATH);
  await mkdir(dirname(target), { recursive: true });
  const cur = await stat(target).catch(() => undefined);
  if (cur && cur.ino === (await stat(shared)).ino) return;
  await rm(target, { force: true });
  try {
    await link(shared, target);
  } catch {
    await copyFile(shared, target);
    await chmod(target, 0o755);
  }
}

/** One copy of the runtime per lab (nodes start in parallel: made once per process and lab). */
const runtimes = new Map<string, Promise<string>>();
function sharedRuntime(state: LabState): Promise<string> {
  const shared = state.path("nspawn", ".node-runtime");
  let p = runtimes.get(shared);
  if (!p) {
    p = (async () => {
      const size = (await stat(process.execPath)).size;
      if (!existsSync(shared) || (await stat(shared)).size !== size) {
        const tmp = `${shared}.tmp-${process.pid}`;
        await mkdir(dirname(shared), { recursive: true });
        await copyFile(process.execPath, tmp);
        await chmod(tmp, 0o755);
        await rename(tmp, shared);
      }
      return shared;
    })();
    p.catch(() => runtimes.delete(shared));
    runtimes.set(shared, p);
  }
  return p;
}

async function startNode(
  ctx: ProvisionContext,
  node: PlannedNode,
  lower: string,
  labKey: { publicKey: string },
  hostKey: { privateKey: string; publicKey: string },
): Promise<void> {
  const { plan, state } = ctx;
  const p = nodePaths(state, node.name);
  await mkdir(p.dir, { recursive: true, mode: 0o700 });
  // The upper layer's top directory is the machine's `/`: 0755, or no unprivileged service starts.
  for (const d of [p.upper, p.work, p.root, p.containerd]) {
    await mkdir(d, { recursive: true });
    await chmod(d, 0o755);
  }
  const seedInput: SeedInput = {
    lab: plan.lab,
    hostname: node.name,
    user: node.ssh.user,
    authorizedKey: labKey.publicKey,
    hostKey,
    mac: node.mac,
    address: node.address,
    prefix: plan.network.prefix,
    gateway: plan.network.gateway || undefined,
  };
  const files: DirectFile[] = upperFiles(nspawnSeed(seedInput));
  if (process.env.LAB_NSPAWN_CLOUD_INIT !== "1") {
    const read = (f: string) => readFile(join(lower, "etc", f), "utf8");
    const base = {
      passwd: await read("passwd"),
      group: await read("group"),
      shadow: await read("shadow"),
      gshadow: await read("gshadow"),
    };
    const direct = directFiles(seedInput, base);
    const uid = direct.find((f) => f.owner && f.path.endsWith("authorized_keys"))!.owner!;
    for (const d of homeDirs(node.ssh.user)) {
      await mkdir(join(p.upper, d), { recursive: true });
      await chown(join(p.upper, d), uid[0], uid[1]);
      await chmod(join(p.upper, d), 0o700);
    }
    files.push(...direct);
  }
  await writeUpper(p.upper, files);
  await placeNodeRuntime(state, p.upper);
  // A machine left half-started (its cgroup still holding processes) is killed first.
  await killPids(await labCgroupPids(plan.lab, node.name), 5000);
  const netnsPath = await ensureNodeNetwork(plan, node);
  const procs = await ensureNodeCgroups(plan.lab, node.name, { cpus: node.cpus, memoryMiB: node.memoryMiB });
  const mounts = (await readFile("/proc/self/mounts", "utf8")).split("\n");
  const cgroupMounts = (await hierarchies()).map((h) => ({
    path: h.path,
    v2: h.v2,
    options: mounts.find((l) => l.split(" ")[1] === h.path)?.split(" ")[3] ?? "",
  }));
  const argv = nspawnArgv({
    lab: plan.lab,
    node: node.name,
    root: p.root,
    hostname: node.name,
    netnsPath,
    containerdDir: p.containerd,
    devices: DEVICES.filter((d) => existsSync(d)),
  });
  await writeFile(
    p.start,
    startScript({
      procs,
      cgroupMounts,
      lower,
      upper: p.upper,
      work: p.work,
      root: p.root,
      source: nodeMarker(plan.lab, node.name),
      argv,
    }),
    { mode: 0o700 },
  );
  const log = await open(p.consoleLog, "w", 0o600);
  let pid: number | undefined;
  try {
    const child = spawn("/bin/sh", [p.start], { detached: true, stdio: ["ignore", log.fd, log.fd] });
    pid = child.pid;
    child.unref();
  } finally {
    await log.close();
  }
  if (!pid) {
    throw new LabError({
      code: "VM_START_FAILED",
      what: `systemd-nspawn did not start for node ${node.name}`,
      where: node.name,
      fix: "install systemd-container (`lab doctor --fix`)",
      source: "host",
    });
  }
  // The chain fails fast when a mount or nspawn itself refuses: say so, with its output.
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline) {
    if (!pidAlive(pid)) break;
    const argv0 = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (argv0.startsWith("systemd-nspawn")) break;
    await sleep(50);
  }
  if (!pidAlive(pid) || isZombie(pid)) {
    throw new LabError({
      code: "VM_START_FAILED",
      what: `systemd-nspawn for node ${node.name} exited at start: ${(await consoleTail(p.consoleLog)) || "(no output)"}`,
      where: node.name,
      fix: "check `lab doctor` (systemd-container) and that the host runs as root with cgroups mounted",
      source: "host",
    });
  }
  const record: NspawnRecord = {
    node: node.name,
    pid,
    startedAt: new Date().toISOString(),
    address: node.address,
    consoleLog: p.consoleLog,
  };
  await state.writeJson(p.record, record);
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
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
    "vm.ssh-ready",
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

export const nspawnProvisioner: Provisioner = {
  name: "nspawn",

  async create(ctx) {
    const { plan, state, reporter } = ctx;
    if (plan.provider.type !== "nspawn")
      throw new Error(`nspawn provisioner got a ${plan.provider.type} plan`);
    const lower = await step(reporter, "image", () => resolveRootfs(ctx), { message: `image ${plan.image}` });
    const labKey = await ensureLabSshKey(state);
    await step(
      reporter,
      "network",
      () =>
        ensureLabNetwork({
          lab: plan.lab,
          cidr: plan.network.cidr,
          prefix: plan.network.prefix,
          gateway: plan.network.gateway,
        }),
      {
        message: `namespace ${plan.network.netns}, gateway ${plan.network.gateway} on ${plan.network.hostVeth}`,
      },
    );
    const running = new Map((await findNspawnProcesses(plan.lab)).map((v) => [v.node, v.pid]));
    const machines = await Promise.all(plan.nodes.map((n) => createNode(ctx, n, lower, labKey, running)));
    await state.writeSecret(
      "ssh/known_hosts",
      machines.map((m) => `${m.ssh.host} ${m.ssh.hostKey.split(/\s+/).slice(0, 2).join(" ")}`).join("\n") +
        "\n",
    );
    return machines;
  },

  async status(ctx) {
    const procs = new Map((await findNspawnProcesses(ctx.plan.lab)).map((v) => [v.node, v]));
    const out: MachineStatus[] = [];
    for (const n of ctx.plan.nodes) {
      const proc = procs.get(n.name);
      const rec = await ctx.state.readJson<NspawnRecord>(`nspawn/${n.name}/machine.json`);
      if (proc) {
        out.push({
          name: n.name,
          state: "running",
          detail: `address ${n.address}, systemd-nspawn pid ${proc.pid}, uptime ${proc.uptimeSeconds}s`,
        });
      } else {
        out.push({ name: n.name, state: rec ? "stopped" : "missing", detail: `address ${n.address}` });
      }
    }
    return out;
  },

  async destroy(ctx) {
    await stopMachines(ctx.labName);
    for (const ns of await nodeNetnses(ctx.labName)) await ip(["netns", "del", ns]);
    await destroyLabNetwork(ctx.labName);
    await rm(ctx.state.path("nspawn"), { recursive: true, force: true });
  },

  async collectLogs(ctx, dir) {
    await mkdir(dir, { recursive: true });
    for (const n of ctx.plan.nodes) {
      const log = nodePaths(ctx.state, n.name).consoleLog;
      if (existsSync(log)) await execa("cp", [log, `${dir}/${n.name}-console.log`]);
    }
  },
};

async function killPids(pids: number[], timeoutMs: number): Promise<number[]> {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
  const deadline = Date.now() + timeoutMs;
  let alive = pids.filter(pidAlive);
  while (alive.length && Date.now() < deadline) {
    await sleep(50);
    alive = alive.filter((p) => pidAlive(p) && !isZombie(p));
  }
  return alive;
}

/**
 * Ends every machine of the lab: the nspawn processes (found by marker) and everything in the
 * lab's cgroups (a machine whose nspawn was killed keeps running under its own init), then removes
 * the cgroups. The machines' mounts live in their private namespaces and go with them.
 */
export async function stopMachines(lab: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const pids = [...(await findNspawnProcesses(lab)).map((p) => p.pid), ...(await labCgroupPids(lab))];
    if (pids.length === 0) break;
    if (Date.now() > deadline) {
      throw new LabError({
        code: "DOWN_INCOMPLETE",
        what: `processes of lab ${lab} survived SIGKILL: ${pids.slice(0, 10).join(", ")}`,
        fix: "look at them with `ps -o pid,stat,cmd -p PID`; a process in D state waits on the kernel",
        source: "host",
      });
    }
    await killPids(pids, 2000);
  }
  const left = await removeLabCgroups(lab);
  if (left.length) {
    throw new LabError({
      code: "DOWN_INCOMPLETE",
      what: `cgroups of lab ${lab} could not be removed: ${left.slice(0, 5).join(", ")}`,
      fix: "rerun `lab down`; a cgroup empties once its last process has been reaped",
      source: "host",
    });
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
