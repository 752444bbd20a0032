/**
 * Pure translation of a Pod spec into CRI sandbox and container configs: command/args/env
 * (with service variables and $(VAR) expansion), workingDir, ports, resources.
 */
import type { V1Container, V1EnvVar, V1Pod, V1Service } from "@kubernetes/client-node";
import type { ContainerConfig, KeyValue, LinuxContainerResources, PodSandboxConfig } from "./cri/types.ts";
import {
  CONTAINER_NAME,
  GRACE_PERIOD,
  MANAGED_BY,
  MANAGED_BY_AGENT,
  POD_NAME,
  POD_NAMESPACE,
  POD_UID,
} from "./labels.ts";
import { cpuMillis, memoryBytes } from "../lib/quantity.ts";
import type { PodObjects } from "./volumes/plan.ts";
import {
  configMapBytes,
  containerMounts,
  PodConfigError,
  resourceValue,
  secretBytes,
} from "./volumes/plan.ts";

export interface SandboxOptions {
  /** cgroupfs path under which pod cgroups are made, e.g. "/lab-pods". */
  cgroupRoot: string;
  /** Directory under which each pod gets its log directory. */
  logRoot: string;
  /** The cluster's DNS: nameserver addresses and the cluster domain (e.g. cluster.local). */
  dns?: ClusterDns;
}

export interface ClusterDns {
  servers: string[];
  clusterDomain: string;
}

/**
 * The sandbox's resolv.conf by dnsPolicy, as the kubelet does it: ClusterFirst (the default) uses
 * the cluster nameservers with `<ns>.svc.<domain>`, `svc.<domain>`, `<domain>` search domains and
 * ndots:5; Default keeps the node's resolv.conf; None uses only spec.dnsConfig, which otherwise is
 * appended.
 */
export function podDnsConfig(
  pod: V1Pod,
  dns: ClusterDns | undefined,
): PodSandboxConfig["dnsConfig"] | undefined {
  const spec = pod.spec ?? { containers: [] };
  const policy = spec.dnsPolicy ?? "ClusterFirst";
  const extra = spec.dnsConfig;
  const own = {
    servers: extra?.nameservers ?? [],
    searches: extra?.searches ?? [],
    options: (extra?.options ?? []).map((o) =>
      o.value !== undefined ? `${o.name}:${o.value}` : (o.name ?? ""),
    ),
  };
  if (policy === "None") return own;
  const clusterFirst =
    policy === "ClusterFirst" || (policy === "ClusterFirstWithHostNet" && spec.hostNetwork);
  if (policy === "Default" || !dns || !clusterFirst || (policy === "ClusterFirst" && spec.hostNetwork)) {
    return extra ? own : undefined;
  }
  const ns = pod.metadata?.namespace ?? "default";
  const d = dns.clusterDomain;
  return {
    servers: [...dns.servers, ...own.servers],
    searches: [`${ns}.svc.${d}`, `svc.${d}`, d, ...own.searches],
    options: ["ndots:5", ...own.options],
  };
}

export const DEFAULT_GRACE_SECONDS = 30;

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

export function podKey(pod: V1Pod): string {
  return `${pod.metadata?.namespace ?? "default"}/${pod.metadata?.name ?? ""}`;
}

export function gracePeriodSeconds(pod: V1Pod): number {
  return (
    pod.metadata?.deletionGracePeriodSeconds ??
    pod.spec?.terminationGracePeriodSeconds ??
    DEFAULT_GRACE_SECONDS
  );
}

/** The pod's cgroup (cgroupfs syntax): every container of the pod lives below it. */
export function podCgroupParent(cgroupRoot: string, uid: string): string {
  return `${cgroupRoot.replace(/\/$/, "")}/pod${uid}`;
}

export function podLabels(pod: V1Pod): Record<string, string> {
  return {
    [MANAGED_BY]: MANAGED_BY_AGENT,
    [POD_UID]: pod.metadata?.uid ?? "",
    [POD_NAME]: pod.metadata?.name ?? "",
    [POD_NAMESPACE]: pod.metadata?.namespace ?? "default",
  };
}

export function sandboxConfig(pod: V1Pod, attempt: number, opts: SandboxOptions): PodSandboxConfig {
  const meta = pod.metadata ?? {};
  const uid = meta.uid ?? "";
  const namespace = meta.namespace ?? "default";
  const hostNetwork = pod.spec?.hostNetwork === true;
  return {
    metadata: { name: meta.name ?? "", uid, namespace, attempt },
    hostname: hostNetwork ? "" : (pod.spec?.hostname ?? meta.name ?? ""),
    logDirectory: `${opts.logRoot.replace(/\/$/, "")}/${namespace}_${meta.name}_${uid}`,
    ...optional("dnsConfig", podDnsConfig(pod, opts.dns)),
    portMappings: (pod.spec?.containers ?? []).flatMap((c) =>
      (c.ports ?? [])
        .filter((p) => p.hostPort)
        .map((p) => ({
          protocol: (p.protocol ?? "TCP") as "TCP" | "UDP" | "SCTP",
          containerPort: p.containerPort,
          hostPort: p.hostPort ?? 0,
          hostIp: p.hostIP ?? "",
        })),
    ),
    labels: { ...(meta.labels ?? {}), ...podLabels(pod) },
    annotations: { ...(meta.annotations ?? {}), [GRACE_PERIOD]: String(gracePeriodSeconds(pod)) },
    linux: {
      cgroupParent: podCgroupParent(opts.cgroupRoot, uid),
      securityContext: {
        namespaceOptions: { network: hostNetwork ? "NODE" : "POD", pid: "CONTAINER", ipc: "POD" },
      },
    },
  };
}

const CPU_PERIOD = 100_000;
const MIN_SHARES = 2;

/** requests/limits → CFS quota/period, shares, memory limit (as the kubelet maps them on cgroup v1). */
export function containerResources(c: V1Container): LinuxContainerResources {
  const limits = c.resources?.limits ?? {};
  const requests = c.resources?.requests ?? {};
  const cpuLimit = cpuMillis(limits["cpu"]);
  // a request defaults to the limit when only the limit is given
  const cpuRequest = cpuMillis(requests["cpu"]) ?? cpuLimit;
  const memLimit = memoryBytes(limits["memory"]);
  return {
    cpuPeriod: cpuLimit ? CPU_PERIOD : 0,
    cpuQuota: cpuLimit ? Math.max(1000, Math.floor((cpuLimit * CPU_PERIOD) / 1000)) : 0,
    cpuShares: cpuRequest ? Math.max(MIN_SHARES, Math.floor((cpuRequest * 1024) / 1000)) : MIN_SHARES,
    memoryLimitInBytes: memLimit ?? 0,
  };
}

/** The docker-link style variables the kubelet gives every container for each service in its namespace. */
export function serviceEnv(services: V1Service[], namespace: string): KeyValue[] {
  const out: KeyValue[] = [];
  const visible = services
    .filter((s) => (s.metadata?.namespace ?? "default") === namespace)
    .filter((s) => s.spec?.clusterIP && s.spec.clusterIP !== "None")
    .sort((a, b) => (a.metadata?.name ?? "").localeCompare(b.metadata?.name ?? ""));
  for (const s of visible) {
    const name = (s.metadata?.name ?? "").toUpperCase().replace(/-/g, "_");
    const ip = s.spec!.clusterIP!;
    const ports = s.spec?.ports ?? [];
    const first = ports[0];
    if (!first) continue;
    out.push({ key: `${name}_SERVICE_HOST`, value: ip });
    out.push({ key: `${name}_SERVICE_PORT`, value: String(first.port) });
    for (const p of ports) {
      if (p.name)
        out.push({
          key: `${name}_SERVICE_PORT_${p.name.toUpperCase().replace(/-/g, "_")}`,
          value: String(p.port),
        });
    }
    const proto = (first.protocol ?? "TCP").toLowerCase();
    out.push({ key: `${name}_PORT`, value: `${proto}://${ip}:${first.port}` });
    for (const p of ports) {
      const pr = (p.protocol ?? "TCP").toUpperCase();
      const prefix = `${name}_PORT_${p.port}_${pr}`;
      out.push({ key: prefix, value: `${pr.toLowerCase()}://${ip}:${p.port}` });
      out.push({ key: `${prefix}_PROTO`, value: pr.toLowerCase() });
      out.push({ key: `${prefix}_PORT`, value: String(p.port) });
      out.push({ key: `${prefix}_ADDR`, value: ip });
    }
  }
  return out;
}

/** Expands $(VAR) from `vars`; $$(VAR) is the escape for a literal $(VAR); unknown names stay as written. */
export function expandVars(s: string, vars: Map<string, string>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) => {
    if (m === "$$") return "$";
    return vars.get(name!) ?? m;
  });
}

export interface PodRuntimeFacts {
  podIP?: string;
  nodeName?: string;
  hostIP?: string;
}

function fieldRef(pod: V1Pod, path: string, facts: PodRuntimeFacts): string {
  switch (path) {
    case "metadata.name":
      return pod.metadata?.name ?? "";
    case "metadata.namespace":
      return pod.metadata?.namespace ?? "default";
    case "metadata.uid":
      return pod.metadata?.uid ?? "";
    case "spec.nodeName":
      return pod.spec?.nodeName ?? facts.nodeName ?? "";
    case "spec.serviceAccountName":
      return pod.spec?.serviceAccountName ?? "";
    case "status.podIP":
      return facts.podIP ?? "";
    case "status.hostIP":
      return facts.hostIP ?? "";
    default: {
      const label = /^metadata\.labels\['(.+)'\]$/.exec(path);
      if (label) return pod.metadata?.labels?.[label[1]!] ?? "";
      const ann = /^metadata\.annotations\['(.+)'\]$/.exec(path);
      if (ann) return pod.metadata?.annotations?.[ann[1]!] ?? "";
      return "";
    }
  }
}

function envValue(
  pod: V1Pod,
  c: V1Container,
  e: V1EnvVar,
  vars: Map<string, string>,
  facts: PodRuntimeFacts,
  objects: PodObjects,
): string | undefined {
  if (e.value !== undefined) return expandVars(e.value, vars);
  const ref = e.valueFrom;
  if (ref?.fieldRef) return fieldRef(pod, ref.fieldRef.fieldPath, facts);
  if (ref?.resourceFieldRef) {
    const r = ref.resourceFieldRef;
    const target = r.containerName ? findContainer(pod, r.containerName) : c;
    return target ? resourceValue(target, r.resource, r.divisor) : "";
  }
  const ns = pod.metadata?.namespace ?? "default";
  if (ref?.configMapKeyRef) {
    const { name = "", key, optional } = ref.configMapKeyRef;
    const cm = objects.configMaps.get(name);
    if (!cm) {
      if (optional) return undefined;
      throw new PodConfigError(`configmap "${name}" not found`);
    }
    const v = configMapBytes(cm).get(key);
    if (v === undefined) {
      if (optional) return undefined;
      throw new PodConfigError(`couldn't find key ${key} in ConfigMap ${ns}/${name}`);
    }
    return v.toString("utf8");
  }
  if (ref?.secretKeyRef) {
    const { name = "", key, optional } = ref.secretKeyRef;
    const s = objects.secrets.get(name);
    if (!s) {
      if (optional) return undefined;
      throw new PodConfigError(`secret "${name}" not found`);
    }
    const v = secretBytes(s).get(key);
    if (v === undefined) {
      if (optional) return undefined;
      throw new PodConfigError(`couldn't find key ${key} in Secret ${ns}/${name}`);
    }
    return v.toString("utf8");
  }
  return "";
}

function findContainer(pod: V1Pod, name: string): V1Container | undefined {
  return [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find((c) => c.name === name);
}

const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

/** envFrom's variables in order (later sources win); keys that are no valid names are left out. */
function envFromVars(c: V1Container, objects: PodObjects): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of c.envFrom ?? []) {
    const prefix = f.prefix ?? "";
    let entries: Map<string, Buffer> | undefined;
    if (f.configMapRef) {
      const name = f.configMapRef.name ?? "";
      const cm = objects.configMaps.get(name);
      if (!cm && !f.configMapRef.optional) throw new PodConfigError(`configmap "${name}" not found`);
      entries = cm ? configMapBytes(cm) : undefined;
    } else if (f.secretRef) {
      const name = f.secretRef.name ?? "";
      const s = objects.secrets.get(name);
      if (!s && !f.secretRef.optional) throw new PodConfigError(`secret "${name}" not found`);
      entries = s ? secretBytes(s) : undefined;
    }
    for (const [k, v] of entries ?? []) {
      if (ENV_NAME.test(prefix + k)) out.set(prefix + k, v.toString("utf8"));
    }
  }
  return out;
}

const NO_OBJECTS: PodObjects = { configMaps: new Map(), secrets: new Map() };

/**
 * The container's environment as the kubelet builds it: service variables, then envFrom, then
 * env (later wins, $(VAR) expanded from what came before). A missing non-optional ConfigMap/Secret
 * (or key) throws PodConfigError (CreateContainerConfigError).
 */
export function containerEnv(
  pod: V1Pod,
  c: V1Container,
  services: V1Service[],
  facts: PodRuntimeFacts,
  objects: PodObjects = NO_OBJECTS,
): KeyValue[] {
  const vars = new Map<string, string>();
  for (const kv of serviceEnv(services, pod.metadata?.namespace ?? "default")) vars.set(kv.key, kv.value);
  for (const [k, v] of envFromVars(c, objects)) vars.set(k, v);
  for (const e of c.env ?? []) {
    const v = envValue(pod, c, e, vars, facts, objects);
    if (v !== undefined) vars.set(e.name, v);
  }
  return [...vars].map(([key, value]) => ({ key, value }));
}

export function containerConfig(
  pod: V1Pod,
  c: V1Container,
  attempt: number,
  services: V1Service[],
  facts: PodRuntimeFacts,
  objects: PodObjects = NO_OBJECTS,
  volumes: { dirs: Map<string, string>; readOnly?: Set<string> } = { dirs: new Map() },
): ContainerConfig {
  const envs = containerEnv(pod, c, services, facts, objects);
  const vars = new Map(envs.map((kv) => [kv.key, kv.value]));
  const mounts = containerMounts(c, volumes.dirs, vars, volumes.readOnly);
  return {
    metadata: { name: c.name, attempt },
    image: { image: c.image ?? "" },
    command: (c.command ?? []).map((s) => expandVars(s, vars)),
    args: (c.args ?? []).map((s) => expandVars(s, vars)),
    workingDir: c.workingDir ?? "",
    envs,
    mounts,
    labels: { ...podLabels(pod), [CONTAINER_NAME]: c.name },
    annotations: {
      [GRACE_PERIOD]: String(gracePeriodSeconds(pod)),
      "lab.io/container-ports": JSON.stringify(c.ports ?? []),
    },
    logPath: `${c.name}/${attempt}.log`,
    // kubectl attach -i needs the container's stdin kept open (spec.containers[].stdin)
    stdin: c.stdin === true,
    stdinOnce: c.stdinOnce === true,
    tty: c.tty === true,
    linux: {
      resources: containerResources(c),
      securityContext: {
        namespaceOptions: { network: pod.spec?.hostNetwork ? "NODE" : "POD", pid: "CONTAINER", ipc: "POD" },
        privileged: c.securityContext?.privileged === true,
      },
    },
  };
}
