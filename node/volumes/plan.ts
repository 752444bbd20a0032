/**
 * Pure part of pod volumes: which ConfigMaps/Secrets a pod needs, what each volume becomes on the
 * node (a directory, a tmpfs, a set of projected files, a host path) and the CRI mounts of each
 * container (readOnly, subPath). The I/O lives in manager.ts.
 */
import type {
  V1ConfigMap,
  V1Container,
  V1DownwardAPIVolumeFile,
  V1KeyToPath,
  V1Pod,
  V1Secret,
  V1ServiceAccountTokenProjection,
  V1Volume,
} from "@kubernetes/client-node";
import { memoryBytes } from "../../lib/quantity.ts";
import type { Mount } from "../cri/types.ts";

/** ConfigMaps and Secrets of the pod's namespace, by name; a missing name is absent. */
export interface PodObjects {
  configMaps: Map<string, V1ConfigMap>;
  secrets: Map<string, V1Secret>;
  /**
   * Service-account tokens of the pod's projected `serviceAccountToken` sources, by tokenKey; a
   * key that could not be had maps to the reason in tokenErrors. Absent: the agent has no API to
   * ask, and the sources are left out (reported as before).
   */
  tokens?: Map<string, string>;
  tokenErrors?: Map<string, string>;
}

/** One token per audience and lifetime: what a TokenRequest for the pod depends on. */
export function tokenKey(s: V1ServiceAccountTokenProjection): string {
  return `${s.audience ?? ""}|${s.expirationSeconds ?? 3600}`;
}

/** The pod's projected serviceAccountToken sources (distinct by tokenKey). */
export function tokenProjections(pod: V1Pod): V1ServiceAccountTokenProjection[] {
  const out = new Map<string, V1ServiceAccountTokenProjection>();
  for (const v of pod.spec?.volumes ?? [])
    for (const s of v.projected?.sources ?? [])
      if (s.serviceAccountToken) out.set(tokenKey(s.serviceAccountToken), s.serviceAccountToken);
  return [...out.values()];
}

/** A user error in the pod's configuration: the container waits with `reason` (kubelet's wording). */
export class PodConfigError extends Error {
  constructor(
    message: string,
    readonly reason = "CreateContainerConfigError",
  ) {
    super(message);
  }
}

export interface ProjectedFile {
  /** Relative to the volume's directory. */
  path: string;
  content: Buffer;
  mode: number;
}

export type VolumeSetup =
  | { kind: "emptyDir"; name: string; memory: boolean; sizeBytes?: number }
  | { kind: "files"; name: string; files: ProjectedFile[]; readOnly: true }
  | { kind: "hostPath"; name: string; path: string; type: string };

/** Volume types the agent does not materialize, and why: reported, not silently ignored. */
export interface SkippedSource {
  volume: string;
  message: string;
}

const DEFAULT_MODE = 0o644;

/** Every ConfigMap and Secret the pod refers to (volumes, env, envFrom), optional ones included. */
export function referencedObjects(pod: V1Pod): { configMaps: Set<string>; secrets: Set<string> } {
  const configMaps = new Set<string>();
  const secrets = new Set<string>();
  for (const v of pod.spec?.volumes ?? []) {
    if (v.configMap?.name) configMaps.add(v.configMap.name);
    if (v.secret?.secretName) secrets.add(v.secret.secretName);
    for (const s of v.projected?.sources ?? []) {
      if (s.configMap?.name) configMaps.add(s.configMap.name);
      if (s.secret?.name) secrets.add(s.secret.name);
    }
  }
  const containers = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
  for (const c of containers) {
    for (const f of c.envFrom ?? []) {
      if (f.configMapRef?.name) configMaps.add(f.configMapRef.name);
      if (f.secretRef?.name) secrets.add(f.secretRef.name);
    }
    for (const e of c.env ?? []) {
      if (e.valueFrom?.configMapKeyRef?.name) configMaps.add(e.valueFrom.configMapKeyRef.name);
      if (e.valueFrom?.secretKeyRef?.name) secrets.add(e.valueFrom.secretKeyRef.name);
    }
  }
  return { configMaps, secrets };
}

/** A ConfigMap's or Secret's entries as bytes: data (text or base64) plus binaryData/stringData. */
export function configMapBytes(cm: V1ConfigMap): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const [k, v] of Object.entries(cm.data ?? {})) out.set(k, Buffer.from(v, "utf8"));
  for (const [k, v] of Object.entries(cm.binaryData ?? {})) out.set(k, Buffer.from(v, "base64"));
  return out;
}

export function secretBytes(s: V1Secret): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const [k, v] of Object.entries(s.data ?? {})) out.set(k, Buffer.from(v, "base64"));
  for (const [k, v] of Object.entries(s.stringData ?? {})) out.set(k, Buffer.from(v, "utf8"));
  return out;
}

/** A relative path that stays inside its volume: no absolute path, no `..` element. */
export function safeRelativePath(p: string): boolean {
  return p !== "" && !p.startsWith("/") && !p.split("/").includes("..");
}

function keyFiles(
  volume: string,
  what: string,
  entries: Map<string, Buffer>,
  items: V1KeyToPath[] | undefined,
  mode: number,
  optional: boolean,
): ProjectedFile[] {
  if (!items?.length) return [...entries].map(([k, content]) => ({ path: k, content, mode }));
  const files: ProjectedFile[] = [];
  for (const it of items) {
    const content = entries.get(it.key);
    if (!content) {
      if (optional) continue;
      throw new PodConfigError(
        `MountVolume.SetUp failed for volume "${volume}" : ${what} has no key "${it.key}"`,
        "ContainerCreating",
      );
    }
    if (!safeRelativePath(it.path))
      throw new PodConfigError(`volume "${volume}": item path "${it.path}" must be relative without ".."`);
    files.push({ path: it.path, content, mode: it.mode ?? mode });
  }
  return files;
}

function labelLines(m: Record<string, string> | undefined): string {
  return Object.keys(m ?? {})
    .sort()
    .map((k) => `${k}=${JSON.stringify(m![k])}`)
    .join("\n");
}

/** The downward API's field values (as files): the subset of fieldRef the kubelet allows in volumes. */
export function downwardField(pod: V1Pod, path: string): string | undefined {
  const meta = pod.metadata ?? {};
  switch (path) {
    case "metadata.name":
      return meta.name ?? "";
    case "metadata.namespace":
      return meta.namespace ?? "default";
    case "metadata.uid":
      return meta.uid ?? "";
    case "metadata.labels":
      return labelLines(meta.labels);
    case "metadata.annotations":
      return labelLines(meta.annotations);
    default: {
      const label = /^metadata\.labels\['(.+)'\]$/.exec(path);
      if (label) return meta.labels?.[label[1]!] ?? "";
      const ann = /^metadata\.annotations\['(.+)'\]$/.exec(path);
      if (ann) return meta.annotations?.[ann[1]!] ?? "";
      return undefined;
    }
  }
}

function downwardFiles(
  pod: V1Pod,
  volume: string,
  items: V1DownwardAPIVolumeFile[] | undefined,
  mode: number,
): ProjectedFile[] {
  return (items ?? []).map((it) => {
    if (!safeRelativePath(it.path))
      throw new PodConfigError(`volume "${volume}": item path "${it.path}" must be relative without ".."`);
    let value: string | undefined;
    if (it.fieldRef) value = downwardField(pod, it.fieldRef.fieldPath);
    else if (it.resourceFieldRef) {
      const c = [...(pod.spec?.containers ?? [])].find((c) => c.name === it.resourceFieldRef!.containerName);
      value = c ? resourceValue(c, it.resourceFieldRef.resource, it.resourceFieldRef.divisor) : "";
    }
    if (value === undefined)
      throw new PodConfigError(
        `volume "${volume}": unsupported downward API field "${it.fieldRef?.fieldPath ?? ""}"`,
      );
    return { path: it.path, content: Buffer.from(value, "utf8"), mode: it.mode ?? mode };
  });
}

/**
 * A container's resource as the downward API gives it: limits.memory etc. in bytes (or the
 * divisor's unit, rounded up), limits.cpu in cores rounded up; a missing limit is reported as
 * unset here (the kubelet would use the node's allocatable).
 */
export function resourceValue(c: V1Container, resource: string, divisor?: string | number): string {
  const [kind, name] = resource.split(".") as [string, string];
  const q = kind === "limits" ? c.resources?.limits?.[name] : c.resources?.requests?.[name];
  if (q === undefined) return "";
  if (name === "cpu") {
    const millis = parseCpuMillis(String(q));
    const div = divisor === undefined ? 1000 : parseCpuMillis(String(divisor)) || 1000;
    return String(Math.ceil(millis / div));
  }
  const bytes = memoryBytes(String(q)) ?? 0;
  const div = divisor === undefined ? 1 : memoryBytes(String(divisor)) || 1;
  return String(Math.ceil(bytes / div));
}

function parseCpuMillis(s: string): number {
  return s.endsWith("m") ? Number(s.slice(0, -1)) : Math.round(Number(s) * 1000);
}

function lookup<T>(
  map: Map<string, T>,
  kind: string,
  name: string,
  volume: string,
  optional: boolean,
): T | undefined {
  const o = map.get(name);
  if (!o && !optional)
    throw new PodConfigError(
      `MountVolume.SetUp failed for volume "${volume}" : ${kind} "${name}" not found`,
      "ContainerCreating",
    );
  return o;
}

/** One volume's setup; throws PodConfigError for a missing object or a bad path. */
export function volumeSetup(pod: V1Pod, v: V1Volume, objects: PodObjects): VolumeSetup | SkippedSource {
  const name = v.name;
  if (v.emptyDir) {
    const memory = v.emptyDir.medium === "Memory";
    const size = v.emptyDir.sizeLimit !== undefined ? memoryBytes(String(v.emptyDir.sizeLimit)) : undefined;
    return { kind: "emptyDir", name, memory, ...(size ? { sizeBytes: size } : {}) };
  }
  if (v.hostPath) return { kind: "hostPath", name, path: v.hostPath.path, type: v.hostPath.type ?? "" };
  if (v.configMap) {
    const optional = v.configMap.optional === true;
    const cm = lookup(objects.configMaps, "configmap", v.configMap.name ?? "", name, optional);
    const mode = v.configMap.defaultMode ?? DEFAULT_MODE;
    const entries = cm ? configMapBytes(cm) : new Map<string, Buffer>();
    const what = `configmap "${v.configMap.name}"`;
    return {
      kind: "files",
      name,
      readOnly: true,
      files: keyFiles(name, what, entries, v.configMap.items, mode, optional || !cm),
    };
  }
  if (v.secret) {
    const optional = v.secret.optional === true;
    const s = lookup(objects.secrets, "secret", v.secret.secretName ?? "", name, optional);
    const mode = v.secret.defaultMode ?? DEFAULT_MODE;
    const entries = s ? secretBytes(s) : new Map<string, Buffer>();
    const what = `secret "${v.secret.secretName}"`;
    return {
      kind: "files",
      name,
      readOnly: true,
      files: keyFiles(name, what, entries, v.secret.items, mode, optional || !s),
    };
  }
  if (v.downwardAPI) {
    const mode = v.downwardAPI.defaultMode ?? DEFAULT_MODE;
    return {
      kind: "files",
      name,
      readOnly: true,
      files: downwardFiles(pod, name, v.downwardAPI.items, mode),
    };
  }
  if (v.projected) {
    const mode = v.projected.defaultMode ?? DEFAULT_MODE;
    const files: ProjectedFile[] = [];
    const skipped: string[] = [];
    for (const s of v.projected.sources ?? []) {
      if (s.configMap) {
        const optional = s.configMap.optional === true;
        const cm = lookup(objects.configMaps, "configmap", s.configMap.name ?? "", name, optional);
        const entries = cm ? configMapBytes(cm) : new Map<string, Buffer>();
        files.push(
          ...keyFiles(
            name,
            `configmap "${s.configMap.name}"`,
            entries,
            s.configMap.items,
            mode,
            optional || !cm,
          ),
        );
      } else if (s.secret) {
        const optional = s.secret.optional === true;
        const sec = lookup(objects.secrets, "secret", s.secret.name ?? "", name, optional);
        const entries = sec ? secretBytes(sec) : new Map<string, Buffer>();
        files.push(
          ...keyFiles(name, `secret "${s.secret.name}"`, entries, s.secret.items, mode, optional || !sec),
        );
      } else if (s.downwardAPI) {
        files.push(...downwardFiles(pod, name, s.downwardAPI.items, mode));
      } else if (s.serviceAccountToken) {
        const t = s.serviceAccountToken;
        if (!objects.tokens) {
          skipped.push(`serviceAccountToken (${t.path})`);
          continue;
        }
        if (!safeRelativePath(t.path))
          throw new PodConfigError(`volume "${name}": item path "${t.path}" must be relative without ".."`);
        const token = objects.tokens.get(tokenKey(t));
        if (token === undefined)
          throw new PodConfigError(
            `MountVolume.SetUp failed for volume "${name}" : failed to fetch token: ${objects.tokenErrors?.get(tokenKey(t)) ?? "no token"}`,
            "ContainerCreating",
          );
        files.push({ path: t.path, content: Buffer.from(token, "utf8"), mode });
      } else if (s.clusterTrustBundle) {
        skipped.push("clusterTrustBundle");
      }
    }
    // the files still appear; the skipped sources are reported by the caller
    if (skipped.length)
      return Object.assign(
        { kind: "files" as const, name, readOnly: true as const, files },
        {
          skipped: `projected volume "${name}": not supported by lab-agent, left out: ${skipped.join(", ")}`,
        },
      );
    return { kind: "files", name, readOnly: true, files };
  }
  const kind = Object.keys(v).find((k) => k !== "name") ?? "unknown";
  return { volume: name, message: `volume "${name}": type ${kind} is not supported by lab-agent` };
}

export function isSkipped(s: VolumeSetup | SkippedSource): s is SkippedSource {
  return "message" in s && !("kind" in s);
}

/** Every volume of the pod; throws PodConfigError on the first one that cannot be set up. */
export function podVolumeSetups(
  pod: V1Pod,
  objects: PodObjects,
): { setups: VolumeSetup[]; warnings: string[] } {
  const setups: VolumeSetup[] = [];
  const warnings: string[] = [];
  for (const v of pod.spec?.volumes ?? []) {
    const s = volumeSetup(pod, v, objects);
    if (isSkipped(s)) warnings.push(s.message);
    else {
      const note = (s as { skipped?: string }).skipped;
      if (note) warnings.push(note);
      setups.push(s);
    }
  }
  return { setups, warnings };
}

/** Expands $(VAR) in subPathExpr from the container's environment (unknown names become empty). */
function expandSubPath(expr: string, env: Map<string, string>): string {
  return expr.replace(/\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (_, n: string) => env.get(n) ?? "");
}

/**
 * The container's CRI mounts. `volumeDirs` maps each volume name to its directory on the node (the
 * host path for hostPath volumes). A subPath mounts that entry below the volume instead.
 */
export function containerMounts(
  c: V1Container,
  volumeDirs: Map<string, string>,
  env: Map<string, string> = new Map(),
  readOnlyVolumes: Set<string> = new Set(),
): Mount[] {
  return (c.volumeMounts ?? []).map((m) => {
    const dir = volumeDirs.get(m.name);
    if (dir === undefined)
      throw new PodConfigError(`container "${c.name}": volumeMount "${m.name}" names no volume of the pod`);
    const sub = m.subPathExpr ? expandSubPath(m.subPathExpr, env) : (m.subPath ?? "");
    if (sub && !safeRelativePath(sub))
      throw new PodConfigError(`container "${c.name}": subPath "${sub}" must be relative without ".."`);
    return {
      containerPath: m.mountPath,
      hostPath: sub ? `${dir.replace(/\/$/, "")}/${sub}` : dir,
      readonly: m.readOnly === true || readOnlyVolumes.has(m.name),
      // kubelet's defaults: private propagation unless asked (HostToContainer/Bidirectional)
      propagation:
        m.mountPropagation === "Bidirectional"
          ? "PROPAGATION_BIDIRECTIONAL"
          : m.mountPropagation === "HostToContainer"
            ? "PROPAGATION_HOST_TO_CONTAINER"
            : "PROPAGATION_PRIVATE",
    };
  });
}
