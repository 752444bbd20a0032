/**
 * Starting one node: its upper layer (seed, accounts, the shared Node runtime), its own network
 * namespace on the lab's bridge, its cgroups with the topology's limits, and the detached process
 * chain that mounts the overlay and runs systemd-nspawn (see index.ts).
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
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
import type { SeedInput } from "../../cloud-init/seed.ts";
import { HOST_PATHS } from "../../templates/paths.ts";
import { LabError } from "../../topology/errors.ts";
import type { Plan, PlannedNode } from "../../topology/plan.ts";
import type { LabState } from "../../topology/state.ts";
import { BRIDGE, netnsName } from "../network/names.ts";
import type { ProvisionContext } from "../provisioner.ts";
import { pidAlive } from "../host-processes.ts";
import { consoleTail } from "../../ssh/ready.ts";
import { ensureNodeCgroups, hierarchies, labCgroupPids } from "./cgroups.ts";
import { directFiles, homeDirs, nspawnSeed, upperFiles, UPPER_LINKS, type DirectFile } from "./guest.ts";
import { nodeMarker, nodeNetns, nodeNetnsPrefix, nspawnArgv, vethNames } from "./names.ts";
import { isZombie, killPids } from "./processes.ts";

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

export async function ip(args: string[]): Promise<void> {
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
export async function nodeNetnses(lab: string): Promise<string[]> {
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

export async function startNode(
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
