/**
 * lab-server's control loops (scheduler + controller manager, each leader-elected) as started from
 * the command line: flags named as kube-controller-manager's and kube-scheduler's.
 */
import { setMaxListeners } from "node:events";
import { hostname } from "node:os";
import type { Command } from "commander";
import { LabClient, readKubeconfig } from "../api/client.ts";
import type { LoopsConfig } from "./controller-manager.ts";
import { runControllerManager, runScheduler } from "./controller-manager.ts";
import { clientLoops } from "./lab-client-loops.ts";
import { certificateUser, localLoopClient, type LocalApi, type LoopClient } from "./local-client.ts";
import { clientPodMetrics, clientScales } from "./controllers/scale-client.ts";

export interface LoopFlags {
  kubeconfig?: string;
  leaderElectLeaseDuration: string;
  leaderElectRenewDeadline: string;
  leaderElectRetryPeriod: string;
  nodeMonitorGracePeriod: string;
  podEvictionTimeout: string;
  clusterCidr?: string;
  nodeCidrMaskSize: string;
}

export function addLoopOptions(cmd: Command): Command {
  return cmd
    .option(
      "--kubeconfig <file>",
      "credentials for the scheduler and controllers; without it they do not run",
    )
    .option("--leader-elect-lease-duration <seconds>", "leader election lease duration", "15")
    .option(
      "--leader-elect-renew-deadline <seconds>",
      "leader stops leading if it cannot renew within this",
      "10",
    )
    .option("--leader-elect-retry-period <seconds>", "how often to try to acquire or renew", "2")
    .option("--node-monitor-grace-period <seconds>", "node lease silence before Ready=Unknown", "40")
    .option(
      "--pod-eviction-timeout <seconds>",
      "default toleration of an unreachable node before eviction",
      "60",
    )
    .option("--cluster-cidr <cidr>", "pod network; each node gets a subnet of it (node IPAM)")
    .option("--node-cidr-mask-size <bits>", "prefix length of each node's pod subnet", "24");
}

function seconds(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0)
    throw new Error(`--${name} must be a positive number of seconds, got "${v}"`);
  return n;
}

export type LoopEvent = Parameters<NonNullable<LoopsConfig["onEvent"]>>[0];

/** The log line of a loop event; an error reads `component: namespace/name: message`. */
export function loopEventLine(e: LoopEvent, identity: string): string {
  if (e.kind === "leading") return `${e.component}: leading as ${identity}`;
  if (e.kind === "stopped") return `${e.component}: stopped leading`;
  if (e.kind === "leader") return `${e.component}: leader is ${e.detail}`;
  return `${e.component}: ${e.detail}`;
}

/**
 * Starts both leader-elected loops; resolves once they have stopped and released their leases
 * after `signal` aborts. `log` gets one line per leadership change or error. With `local` (the
 * API server of this process) they call it in-process as the kubeconfig's user (local-client.ts);
 * without, over HTTPS to the kubeconfig's server.
 */
export async function runLoopsFromFlags(
  flags: LoopFlags,
  signal: AbortSignal,
  log: (line: string) => void,
  local?: LocalApi,
): Promise<void> {
  if (!flags.kubeconfig) return;
  setMaxListeners(0, signal); // both electors and every loop of a term listen on it
  const client = await LabClient.fromKubeconfig(flags.kubeconfig);
  const kubeconfig = await readKubeconfig(flags.kubeconfig);
  const api: LoopClient = local
    ? localLoopClient(local, certificateUser(kubeconfig.cert))
    : clientLoops(client);
  const cfg: LoopsConfig = {
    ...api,
    // Scales and pod metrics go over HTTPS to the server even for in-process loops (only the
    // disruption and HPA controllers use them).
    scales: clientScales(client),
    podMetrics: clientPodMetrics(client),
    identity: `${hostname()}_${process.pid}`,
    leaderElection: {
      leaseDurationSeconds: seconds("leader-elect-lease-duration", flags.leaderElectLeaseDuration),
      renewDeadlineMs: seconds("leader-elect-renew-deadline", flags.leaderElectRenewDeadline) * 1000,
      retryPeriodMs: seconds("leader-elect-retry-period", flags.leaderElectRetryPeriod) * 1000,
    },
    nodeLifecycle: {
      gracePeriodMs: seconds("node-monitor-grace-period", flags.nodeMonitorGracePeriod) * 1000,
      podEvictionTimeoutMs: seconds("pod-eviction-timeout", flags.podEvictionTimeout) * 1000,
    },
    clusterCidr: flags.clusterCidr,
    nodeCidrMaskSize: Number(flags.nodeCidrMaskSize),
    // The kubeconfig's CA is the cluster's: what pods verify the API with (kube-root-ca.crt).
    rootCa: kubeconfig.ca.toString("utf8"),
    onEvent: (e) => log(loopEventLine(e, cfg.identity)),
  };
  try {
    await Promise.all([runControllerManager(cfg, signal), runScheduler(cfg, signal)]);
  } finally {
    client.close();
  }
}
