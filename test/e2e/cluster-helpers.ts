/**
 * Reading and poking a running lab's cluster from a test, for any provider: stock kubectl through
 * the lab's kubeconfig, and a root shell on a node given by the suite (`lab ssh` on VMs, nsenter
 * into the machine on nspawn). Taken out of test/e2e/cluster.test.ts so the nspawn suite runs the
 * same scenarios; cluster.test.ts uses it too, with `lab ssh` onto the nodes.
 *
 * "From a pod" means: on the pod's node, enter the pod container's namespaces (`ctr task ls` gives
 * its pid, `nsenter` its mount/net/pid namespaces) and run the image's busybox, so the scenarios do
 * not depend on `kubectl exec`.
 */
import type { V1Endpoints, V1Node, V1Pod } from "@kubernetes/client-node";
import { readFile } from "node:fs/promises";
import { execa } from "execa";
import { findNspawnProcesses } from "../../provisioners/nspawn/index.ts";
import type { E2eLab, RunOpts } from "./helpers.ts";

export interface ShellResult {
  stdout: string;
  stderr: string;
  exitCode?: number;
}

/** A root `sh` script on a node of the lab. */
export type OnNode = (
  node: string,
  script: string,
  opts?: { reject?: boolean; timeoutMs?: number },
) => Promise<ShellResult>;

/** `sh` on a node as root through `lab ssh`; the script travels base64-encoded so no shell layer re-quotes it. */
export function sshOnNode(l: E2eLab): OnNode {
  return (node, script, opts = {}) => {
    const b64 = Buffer.from(script).toString("base64");
    return l.lab(["ssh", "--lab", l.name, node, "--", `echo ${b64} | base64 -d | sudo sh`], opts);
  };
}

/** The pid of an nspawn machine's init on this host (the child of its systemd-nspawn). */
export async function machineInitPid(lab: string, node: string): Promise<number> {
  const found = (await findNspawnProcesses(lab)).filter((p) => p.node === node);
  if (found.length !== 1)
    throw new Error(`expected one systemd-nspawn for ${node}, found ${found.map((p) => p.pid).join(",")}`);
  const nspawn = found[0]!.pid;
  const children = (await readFile(`/proc/${nspawn}/task/${nspawn}/children`, "utf8")).trim().split(/\s+/);
  const init = Number(children[0]);
  if (!init) throw new Error(`systemd-nspawn ${nspawn} of ${node} has no child (the machine's init)`);
  return init;
}

/**
 * `sh` as root inside an nspawn machine, entered from this host with nsenter (all its namespaces):
 * no `lab` process to start per command, which costs seconds on a loaded host.
 */
export function nspawnOnNode(l: E2eLab): OnNode {
  return async (node, script, opts: RunOpts = {}) => {
    const pid = await machineInitPid(l.name, node);
    return execa("nsenter", ["-t", String(pid), "-a", "-r", "-w", "/bin/sh", "-c", script], {
      reject: opts.reject ?? true,
      env: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" },
      extendEnv: false,
      ...(opts.timeoutMs ? { timeout: opts.timeoutMs } : {}),
    });
  };
}

/** Pods running, Ready and not being deleted. Pure. */
export const running = (pods: V1Pod[]) =>
  pods.filter(
    (p) =>
      p.status?.phase === "Running" &&
      !p.metadata?.deletionTimestamp &&
      p.status.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
  );

export const nodeReady = (n: V1Node) => n.status?.conditions?.find((c) => c.type === "Ready")?.status;

/** The scenarios' reads and actions on one lab, with `onNode` as the way onto its nodes. */
export function clusterOps(l: E2eLab, onNode: OnNode) {
  const items = async <T>(args: string[]) => (await l.kubectlJson<{ items: T[] }>(args)).items;
  const samplePods = () => items<V1Pod>(["get", "pods", "-l", "app=sample"]);

  async function endpointIPs(service: string): Promise<string[]> {
    const ep = await l.kubectlJson<V1Endpoints>(["get", "endpoints", service]);
    return (ep.subsets ?? []).flatMap((s) => (s.addresses ?? []).map((a) => a.ip)).sort();
  }

  /** The host pid of a pod's (first) container, from containerd on its node. */
  async function containerPid(pod: V1Pod): Promise<{ node: string; pid: number; id: string }> {
    const node = pod.spec!.nodeName!;
    const id = pod.status!.containerStatuses![0]!.containerID!.replace(/^containerd:\/\//, "");
    const r = await onNode(node, `ctr -n k8s.io task ls | awk '$1=="${id}"{print $2}'`);
    const pid = Number(r.stdout.trim());
    if (!pid) throw new Error(`no task for container ${id} of ${pod.metadata!.name} on ${node}`);
    return { node, pid, id };
  }

  /** A busybox sh script inside pod `name` (its mount, UTS, IPC, network and pid namespaces). */
  async function inPod(name: string, script: string, opts: { reject?: boolean; timeoutMs?: number } = {}) {
    const pod = await l.kubectlJson<V1Pod>(["get", "pod", name]);
    const { node, pid } = await containerPid(pod);
    const b64 = Buffer.from(script).toString("base64");
    return onNode(node, `nsenter -t ${pid} -m -u -i -n -p sh -c "$(echo ${b64} | base64 -d)"`, opts);
  }

  /** `count` GETs of `url` from the client pod: how many answers came from each pod name, and failures. */
  async function requests(url: string, count: number): Promise<{ by: Map<string, number>; failed: number }> {
    const r = await inPod(
      "client",
      `i=0; while [ $i -lt ${count} ]; do timeout 3 wget -q -O - ${url} || echo FAILED; i=$((i+1)); done`,
      { timeoutMs: 600_000 },
    );
    const by = new Map<string, number>();
    let failed = 0;
    for (const line of r.stdout.split("\n").map((s) => s.trim())) {
      if (!line) continue;
      if (line === "FAILED") failed++;
      else by.set(line, (by.get(line) ?? 0) + 1);
    }
    return { by, failed };
  }

  async function rolloutStatus(deployment: string, timeout = "10m"): Promise<void> {
    await l.kubectl(["rollout", "status", `deployment/${deployment}`, `--timeout=${timeout}`], {
      timeoutMs: 15 * 60_000,
    });
  }

  return { items, samplePods, endpointIPs, containerPid, inPod, requests, rolloutStatus, onNode };
}
