/**
 * Pod volumes on the node: one directory per pod under the agent's root (`<root>/<uid>/volumes/
 * <name>`), a tmpfs for `emptyDir.medium: Memory`, ConfigMap/Secret/downward API files rewritten
 * on every container start, host paths checked by their type. `tearDown` leaves nothing behind.
 */
import type {
  CoreV1Event,
  V1ConfigMap,
  V1Pod,
  V1Secret,
  V1ServiceAccountTokenProjection,
} from "@kubernetes/client-node";
import { execFile } from "node:child_process";
import { chmod, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { promisify } from "node:util";
import { ApiStatusError } from "../../api/client.ts";
import { timestamp } from "../../lib/time.ts";
import type { FailoverClient } from "../api/failover.ts";
import type { Mount } from "../cri/types.ts";
import type { PodObjects, ProjectedFile, VolumeSetup } from "./plan.ts";
import { PodConfigError, podVolumeSetups, referencedObjects, tokenKey, tokenProjections } from "./plan.ts";

const run = promisify(execFile);

/** Where the agent gets ConfigMaps and Secrets (the API); undefined when the object does not exist. */
export interface ObjectSource {
  configMap(namespace: string, name: string): Promise<V1ConfigMap | undefined>;
  secret(namespace: string, name: string): Promise<V1Secret | undefined>;
  /**
   * A volume of the pod cannot be set up (the message is the kubelet's `MountVolume.SetUp failed
   * for volume ...`): tell the API, as the kubelet's Warning FailedMount event does.
   */
  mountFailed?(pod: V1Pod, message: string): Promise<void>;
  /** A token for the pod's service account, bound to the pod (TokenRequest), for one projected source. */
  serviceAccountToken?(pod: V1Pod, projection: V1ServiceAccountTokenProjection): Promise<string>;
}

/** Fetches every ConfigMap and Secret the pod refers to (missing ones are simply absent). */
export async function fetchPodObjects(source: ObjectSource | undefined, pod: V1Pod): Promise<PodObjects> {
  const ns = pod.metadata?.namespace ?? "default";
  const refs = referencedObjects(pod);
  const objects: PodObjects = { configMaps: new Map(), secrets: new Map() };
  if (!source) return objects;
  const projections = tokenProjections(pod);
  if (source.serviceAccountToken && projections.length) {
    const tokens = (objects.tokens = new Map<string, string>());
    const errors = (objects.tokenErrors = new Map<string, string>());
    await Promise.all(
      projections.map(async (p) => {
        try {
          tokens.set(tokenKey(p), await source.serviceAccountToken!(pod, p));
        } catch (err) {
          // The volume waits with the kubelet's `failed to fetch token: ...`, and is tried again.
          errors.set(tokenKey(p), err instanceof Error ? err.message : String(err));
        }
      }),
    );
  }
  await Promise.all([
    ...[...refs.configMaps].map(async (n) => {
      const o = await source.configMap(ns, n);
      if (o) objects.configMaps.set(n, o);
    }),
    ...[...refs.secrets].map(async (n) => {
      const o = await source.secret(ns, n);
      if (o) objects.secrets.set(n, o);
    }),
  ]);
  return objects;
}

export interface PodVolumes {
  /** Volume name → directory (or file) on the node. */
  dirs: Map<string, string>;
  /** Volumes that are read-only whatever the mount says (ConfigMap, Secret, downward API). */
  readOnly: Set<string>;
  /** Sources left out (e.g. serviceAccountToken), for the pod's status. */
  warnings: string[];
}

async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile("/proc/mounts", "utf8").catch(() => "");
  return text
    .split("\n")
    .map((l) => (l.split(" ")[1] ?? "").replace(/\\040/g, " "))
    .filter((m) => m === dir || m.startsWith(dir + "/"));
}

async function kindOf(path: string): Promise<string | undefined> {
  const st = await stat(path).catch(() => undefined);
  if (!st) return undefined;
  if (st.isDirectory()) return "Directory";
  if (st.isFile()) return "File";
  if (st.isSocket()) return "Socket";
  if (st.isCharacterDevice()) return "CharDevice";
  if (st.isBlockDevice()) return "BlockDevice";
  return "other";
}

/** hostPath's `type` checks, as the kubelet does them (OrCreate variants create what is missing). */
export async function checkHostPath(volume: string, path: string, type: string): Promise<void> {
  const fail = (why: string): never => {
    throw new PodConfigError(
      `MountVolume.SetUp failed for volume "${volume}" : hostPath type check failed: ${path} ${why}`,
      "ContainerCreating",
    );
  };
  let kind = await kindOf(path);
  if (type === "DirectoryOrCreate" && kind === undefined) {
    await mkdir(path, { recursive: true, mode: 0o755 });
    kind = "Directory";
  }
  if (type === "FileOrCreate" && kind === undefined) {
    await mkdir(dirname(path), { recursive: true, mode: 0o755 });
    await writeFile(path, "", { mode: 0o644, flag: "a" });
    kind = "File";
  }
  switch (type) {
    case "":
      return;
    case "Directory":
    case "DirectoryOrCreate":
      if (kind !== "Directory") fail("is not a directory");
      return;
    case "File":
    case "FileOrCreate":
      if (kind !== "File") fail("is not a file");
      return;
    case "Socket":
    case "CharDevice":
    case "BlockDevice":
      if (kind !== type) fail(`is not a ${type.replace("Device", " device").toLowerCase()}`);
      return;
    default:
      fail(`has an unknown type "${type}"`);
  }
}

/** Writes the volume's files (each via a temp file and rename) and removes files no longer wanted. */
async function writeFiles(dir: string, files: ProjectedFile[]): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const wanted = new Set(files.map((f) => f.path));
  for (const f of files) {
    const target = join(dir, f.path);
    await mkdir(dirname(target), { recursive: true, mode: 0o755 });
    const tmp = join(dirname(target), `..tmp.${process.pid}.${Math.random().toString(36).slice(2)}`);
    await writeFile(tmp, f.content, { mode: f.mode });
    // writeFile's mode is masked by the umask: set it exactly
    await chmod(tmp, f.mode);
    await rename(tmp, target);
  }
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        await walk(p);
        if ((await readdir(p)).length === 0 && ![...wanted].some((w) => w.startsWith(relative(dir, p) + "/")))
          await rm(p, { recursive: true, force: true });
      } else if (!wanted.has(relative(dir, p))) await rm(p, { force: true });
    }
  };
  await walk(dir);
}

export class VolumeManager {
  constructor(private readonly root: string) {}

  podDir(uid: string): string {
    return join(this.root, uid);
  }

  private volumeDir(uid: string, name: string): string {
    return join(this.podDir(uid), "volumes", name);
  }

  /** Sets up (or refreshes) every volume of the pod; throws PodConfigError on a user error. */
  async setUp(pod: V1Pod, objects: PodObjects): Promise<PodVolumes> {
    const uid = pod.metadata?.uid ?? "";
    if (!uid) throw new Error("pod without uid");
    const { setups, warnings } = podVolumeSetups(pod, objects);
    const dirs = new Map<string, string>();
    const readOnly = new Set<string>();
    for (const s of setups) {
      dirs.set(s.name, await this.setUpOne(uid, s));
      if (s.kind === "files") readOnly.add(s.name);
    }
    return { dirs, readOnly, warnings };
  }

  private async setUpOne(uid: string, s: VolumeSetup): Promise<string> {
    switch (s.kind) {
      case "hostPath":
        await checkHostPath(s.name, s.path, s.type);
        return s.path;
      case "emptyDir": {
        const dir = this.volumeDir(uid, s.name);
        await mkdir(dir, { recursive: true });
        if (s.memory && (await mountsUnder(dir)).length === 0) {
          const opts = ["mode=0777", ...(s.sizeBytes ? [`size=${s.sizeBytes}`] : [])].join(",");
          await run("mount", ["-t", "tmpfs", "-o", opts, "tmpfs", dir]);
        }
        // every user of the pod may write an emptyDir (kubelet: 0777)
        await chmod(dir, 0o777);
        return dir;
      }
      case "files": {
        const dir = this.volumeDir(uid, s.name);
        await writeFiles(dir, s.files);
        return dir;
      }
    }
  }

  /** Rewrites only the file volumes (ConfigMap, Secret, downward API) of a pod already set up. */
  async refreshFiles(pod: V1Pod, objects: PodObjects): Promise<void> {
    const uid = pod.metadata?.uid ?? "";
    if (!uid || !(await kindOf(this.podDir(uid)))) return;
    for (const s of podVolumeSetups(pod, objects).setups) {
      if (s.kind === "files") await writeFiles(this.volumeDir(uid, s.name), s.files);
    }
  }

  /**
   * Creates missing subPath targets below the pod's own volumes (kubelet does the same for
   * emptyDir); a missing subPath of a ConfigMap-like volume stays missing and fails the create.
   */
  async ensureMountSources(uid: string, mounts: Mount[]): Promise<void> {
    const base = this.podDir(uid) + "/";
    for (const m of mounts) {
      if (m.hostPath.startsWith(base) && (await kindOf(m.hostPath)) === undefined)
        await mkdir(m.hostPath, { recursive: true, mode: 0o777 });
    }
  }

  /** Unmounts the pod's tmpfs volumes and removes its directory. */
  async tearDown(uid: string): Promise<void> {
    if (!uid || uid.includes("/")) return;
    const dir = this.podDir(uid);
    for (const m of (await mountsUnder(dir)).reverse())
      await run("umount", [m]).catch(() => run("umount", ["-l", m]));
    await rm(dir, { recursive: true, force: true });
  }

  /** UIDs that have a directory here (for sweeping leftovers of pods gone while the agent was down). */
  async podUids(): Promise<string[]> {
    const entries = await readdir(this.root, { withFileTypes: true }).catch(() => []);
    return entries.filter((e) => e.isDirectory()).map((e) => e.name);
  }
}

/** Pods whose last FailedMount message is remembered, at most (oldest forgotten first). */
const MOUNT_EVENTS_REMEMBERED = 1000;

/**
 * ConfigMaps and Secrets by GET at each container start (the node identity may read both), and
 * FailedMount events: one per pod and distinct message, not one per retry.
 */
/** Tokens kept per pod and source until 80% of their life, as the kubelet's token manager. */
const TOKEN_REFRESH_FRACTION = 0.8;

export function apiObjectSource(
  client: Pick<FailoverClient, "get" | "create" | "createToken">,
): ObjectSource {
  const tokens = new Map<string, { token: string; refreshAt: number; expiresAt: number }>();
  const orMissing = <T>(p: Promise<T>): Promise<T | undefined> =>
    p.catch((err: unknown) => {
      if (err instanceof ApiStatusError && err.code === 404) return undefined;
      throw err;
    });
  const reported = new Map<string, string>();
  return {
    configMap: (ns, name) => orMissing(client.get("configmaps", name, ns)),
    secret: (ns, name) => orMissing(client.get("secrets", name, ns)),
    async serviceAccountToken(pod, p) {
      const now = Date.now();
      for (const [k, t] of tokens) if (t.expiresAt <= now) tokens.delete(k);
      const key = `${pod.metadata?.uid ?? ""}|${tokenKey(p)}`;
      const have = tokens.get(key);
      if (have && now < have.refreshAt) return have.token;
      const seconds = p.expirationSeconds ?? 3600;
      const r = await client.createToken(
        pod.metadata?.namespace ?? "default",
        pod.spec?.serviceAccountName || "default",
        {
          ...(p.audience ? { audiences: [p.audience] } : {}),
          expirationSeconds: seconds,
          boundObjectRef: {
            kind: "Pod",
            apiVersion: "v1",
            name: pod.metadata?.name ?? "",
            uid: pod.metadata?.uid ?? "",
          },
        },
      );
      const expiresAt = Date.parse(r.expirationTimestamp) || now + seconds * 1000;
      tokens.set(key, {
        token: r.token,
        expiresAt,
        refreshAt: now + (expiresAt - now) * TOKEN_REFRESH_FRACTION,
      });
      return r.token;
    },
    async mountFailed(pod, message) {
      const uid = pod.metadata?.uid ?? "";
      if (reported.get(uid) === message) return;
      reported.delete(uid);
      reported.set(uid, message);
      if (reported.size > MOUNT_EVENTS_REMEMBERED) reported.delete(reported.keys().next().value!);
      await client.create("events", failedMountEvent(pod, message, new Date())).catch(() => {
        // Events are best effort, as the kubelet's; a failed one is tried again on the next retry.
        if (reported.get(uid) === message) reported.delete(uid);
      });
    },
  };
}

/** The kubelet's event for a volume it cannot set up. */
export function failedMountEvent(pod: V1Pod, message: string, now: Date): CoreV1Event {
  const ns = pod.metadata?.namespace ?? "default";
  const node = pod.spec?.nodeName;
  const t = timestamp(now) as unknown as Date;
  return {
    apiVersion: "v1",
    kind: "Event",
    metadata: {
      namespace: ns,
      name: `${pod.metadata?.name}.${now.getTime().toString(16)}${Math.random().toString(16).slice(2, 6)}`,
    },
    involvedObject: {
      apiVersion: "v1",
      kind: "Pod",
      name: pod.metadata?.name,
      namespace: ns,
      uid: pod.metadata?.uid,
    },
    reason: "FailedMount",
    message,
    type: "Warning",
    source: { component: "kubelet", ...(node ? { host: node } : {}) },
    reportingComponent: "kubelet",
    ...(node ? { reportingInstance: node } : {}),
    firstTimestamp: t,
    lastTimestamp: t,
    count: 1,
  };
}
