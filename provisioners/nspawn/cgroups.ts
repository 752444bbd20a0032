/**
 * The node's cgroups on the host. Without systemd as PID 1 nspawn's `--property=` has nobody to
 * talk to, so the provider makes `lab-nspawn/LAB/NODE` in every mounted hierarchy itself, writes
 * the topology's limits (cgroup v1: cpu.cfs_quota_us, memory.limit_in_bytes; v2: cpu.max,
 * memory.max) and starts nspawn inside. `lab down` finds the directories by that path alone.
 */
import { mkdir, readdir, readFile, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CGROUP_PARENT, labCgroup, nodeCgroup } from "./names.ts";

export const CGROUP_FS = "/sys/fs/cgroup";

export interface Hierarchy {
  /** Mount point. */
  path: string;
  v2: boolean;
  controllers: string[];
}

/** Every cgroup hierarchy mounted under /sys/fs/cgroup (pure: from /proc/self/mounts text). */
export function parseHierarchies(mounts: string, fsRoot = CGROUP_FS): Hierarchy[] {
  const out: Hierarchy[] = [];
  for (const line of mounts.split("\n")) {
    const [, mp, type, opts] = line.split(" ");
    if (!mp || (type !== "cgroup" && type !== "cgroup2")) continue;
    if (mp !== fsRoot && !mp.startsWith(fsRoot + "/")) continue;
    const controllers =
      type === "cgroup"
        ? (opts ?? "").split(",").filter((o) => KNOWN_V1.has(o) || o.startsWith("name="))
        : [];
    out.push({ path: mp, v2: type === "cgroup2", controllers });
  }
  return out;
}

const KNOWN_V1 = new Set([
  "cpu",
  "cpuacct",
  "cpuset",
  "memory",
  "devices",
  "freezer",
  "net_cls",
  "net_prio",
  "blkio",
  "perf_event",
  "hugetlb",
  "pids",
  "rdma",
  "misc",
]);

export async function hierarchies(): Promise<Hierarchy[]> {
  return parseHierarchies(await readFile("/proc/self/mounts", "utf8"));
}

export interface Limits {
  cpus: number;
  memoryMiB: number;
}

/** Limit files to write into a hierarchy's node cgroup (pure). */
export function limitFiles(h: Hierarchy, l: Limits): [string, string][] {
  const bytes = String(l.memoryMiB * 1024 * 1024);
  const period = 100_000;
  if (h.v2) return [];
  const out: [string, string][] = [];
  if (h.controllers.includes("cpu"))
    out.push(["cpu.cfs_period_us", String(period)], ["cpu.cfs_quota_us", String(l.cpus * period)]);
  if (h.controllers.includes("memory")) out.push(["memory.limit_in_bytes", bytes]);
  return out;
}

/**
 * Creates the node's cgroup in every hierarchy with its limits; returns the `cgroup.procs` files
 * the starter writes its pid into. cpuset needs cpus and mems copied into every new level.
 */
export async function ensureNodeCgroups(lab: string, node: string, limits: Limits): Promise<string[]> {
  const procs: string[] = [];
  for (const h of await hierarchies()) {
    let parent = h.path;
    for (const part of nodeCgroup(lab, node).split("/")) {
      const dir = join(parent, part);
      // Nodes start in parallel and share the upper levels.
      await mkdir(dir, { recursive: true });
      if (h.controllers.includes("cpuset")) {
        for (const f of ["cpuset.cpus", "cpuset.mems"]) {
          const cur = (await readFile(join(dir, f), "utf8")).trim();
          if (!cur) await writeFile(join(dir, f), (await readFile(join(parent, f), "utf8")).trim());
        }
      }
      parent = dir;
    }
    for (const [f, v] of limitFiles(h, limits)) await writeFile(join(parent, f), v);
    procs.push(join(parent, "cgroup.procs"));
  }
  return procs;
}

/** Every pid in the lab's cgroups (any hierarchy, any depth below `lab-nspawn/LAB`). */
export async function labCgroupPids(lab: string, only?: string): Promise<number[]> {
  const pids = new Set<number>();
  const walk = async (dir: string): Promise<void> => {
    const text = await readFile(join(dir, "cgroup.procs"), "utf8").catch(() => "");
    for (const l of text.split("\n")) if (l.trim()) pids.add(Number(l));
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) if (e.isDirectory()) await walk(join(dir, e.name));
  };
  for (const h of await hierarchies())
    await walk(join(h.path, only ? nodeCgroup(lab, only) : labCgroup(lab)));
  return [...pids];
}

/** Removes the lab's cgroup trees bottom-up; returns the directories that are still busy. */
export async function removeLabCgroups(lab: string): Promise<string[]> {
  const left: string[] = [];
  const removeTree = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => undefined);
    if (!entries) return;
    for (const e of entries) if (e.isDirectory()) await removeTree(join(dir, e.name));
    try {
      await rmdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") left.push(dir);
    }
  };
  for (const h of await hierarchies()) {
    await removeTree(join(h.path, labCgroup(lab)));
    // The shared parent goes with the last lab (another lab's nodes keep it busy: fine).
    await rmdir(join(h.path, CGROUP_PARENT)).catch(() => undefined);
  }
  return left;
}
