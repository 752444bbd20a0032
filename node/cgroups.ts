/**
 * Pod-level cgroups. containerd creates `<cgroupRoot>/pod<uid>` (the sandbox's cgroup parent) in
 * every hierarchy but never removes it: the agent does, after the sandbox is gone.
 */
import { readdir, rmdir } from "node:fs/promises";
import { join } from "node:path";

const CGROUP_FS = "/sys/fs/cgroup";

/** The mount points of every hierarchy: cgroup v1 controllers and the v2 (unified) tree. */
async function hierarchies(fsRoot: string): Promise<string[]> {
  const entries = await readdir(fsRoot, { withFileTypes: true }).catch(() => []);
  const dirs = entries.filter((e) => e.isDirectory()).map((e) => join(fsRoot, e.name));
  // pure v2: the root itself is the hierarchy (it has cgroup.controllers)
  const isV2 = entries.some((e) => e.name === "cgroup.controllers");
  return isV2 ? [fsRoot] : dirs;
}

/** rmdir bottom-up; a cgroup with processes in it stays (EBUSY) and is reported. */
async function removeTree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => undefined);
  if (!entries) return [];
  const left: string[] = [];
  for (const e of entries) if (e.isDirectory()) left.push(...(await removeTree(join(dir, e.name))));
  try {
    await rmdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") left.push(dir);
  }
  return left;
}

/** Removes the pod's cgroup in every hierarchy. Returns the directories that could not be removed. */
export async function removePodCgroup(
  cgroupRoot: string,
  uid: string,
  fsRoot = CGROUP_FS,
): Promise<string[]> {
  const rel = `${cgroupRoot.replace(/^\/|\/$/g, "")}/pod${uid}`;
  const left: string[] = [];
  for (const h of await hierarchies(fsRoot)) left.push(...(await removeTree(join(h, rel))));
  return left;
}

/** Pod UIDs that still have a cgroup under `cgroupRoot` in any hierarchy. */
export async function podCgroupUids(cgroupRoot: string, fsRoot = CGROUP_FS): Promise<Set<string>> {
  const uids = new Set<string>();
  for (const h of await hierarchies(fsRoot)) {
    const entries = await readdir(join(h, cgroupRoot), { withFileTypes: true }).catch(() => []);
    for (const e of entries) if (e.isDirectory() && e.name.startsWith("pod")) uids.add(e.name.slice(3));
  }
  return uids;
}

/** Does the pod's cgroup exist in any hierarchy? */
export async function podCgroupExists(cgroupRoot: string, uid: string, fsRoot = CGROUP_FS): Promise<boolean> {
  return (await podCgroupUids(cgroupRoot, fsRoot)).has(uid);
}
