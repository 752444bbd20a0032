/**
 * lab-agent: the node agent. Registers the Node and keeps its Lease and Ready condition fresh,
 * runs the pods bound to this node through containerd (PodAgent), programs the service proxy from
 * Services and Endpoints, and routes to the other nodes' pod CIDRs. Installed as a systemd unit by
 * the bootstrap's join-nodes step (templates/lab-agent.ts). SIGTERM stops the agent, not the
 * containers: a restarted agent adopts them.
 */
import type { V1Endpoints, V1Node, V1Pod, V1Service } from "@kubernetes/client-node";
import { Command, Option } from "commander";
import { mkdir, readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ApiStatusError, readKubeconfig, type Plural } from "../api/client.ts";
import { Informer, type KubeObject } from "../api/informer.ts";
import { clientListWatch } from "../api/list-watch.ts";
import { PodAgent, type AgentEvent, type PodStatusSink } from "./agent.ts";
import { FailoverClient } from "./api/failover.ts";
import { CriClient } from "./cri/client.ts";
import { Heartbeat, hostFacts } from "./heartbeat.ts";
import { parseLabels, parseTaints, type NodeRegistration } from "./node-status.ts";
import { runNetworkLoops, startDns } from "./network-loops.ts";
import { AgentServer, DEFAULT_AGENT_PORT } from "./server/server.ts";
import { StatsSampler } from "./stats.ts";
import { apiObjectSource } from "./volumes/manager.ts";
import { waitUntilReady } from "../topology/readiness.ts";

export interface AgentFlags {
  kubeconfig: string;
  nodeName: string;
  nodeIp: string;
  podCidr?: string;
  apiServers?: string;
  clusterDomain: string;
  clusterDns?: string;
  dnsListen?: string;
  resolvConf: string;
  serviceClusterIpRange?: string;
  stateDir: string;
  registerWithTaints?: string;
  nodeLabels?: string;
  containerRuntimeEndpoint: string;
  podLogDir: string;
  cgroupRoot: string;
  maxPods: string;
  netns?: string;
  port: string;
  address: string;
  tlsCertFile?: string;
  tlsPrivateKeyFile?: string;
  clientCaFile?: string;
}

const list = (s: string | undefined): string[] =>
  (s ?? "")
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);

export function agentCommand(): Command {
  return new Command("lab-agent")
    .description("lab's node agent: registers the node and runs its pods through containerd (CRI)")
    .requiredOption("--kubeconfig <path>", "kubeconfig with this node's client certificate")
    .option("--node-name <name>", "the Node's name", hostname())
    .requiredOption("--node-ip <ip>", "the node's InternalIP (pods' hostIP, other nodes route pods via it)")
    .option("--pod-cidr <cidr>", "pod CIDR to register, unless the Node already has one")
    .option(
      "--api-servers <urls>",
      "comma-separated API server URLs to fail over among (default: the kubeconfig's server)",
    )
    .option("--cluster-domain <domain>", "cluster DNS domain for pods' search paths", "cluster.local")
    .option("--cluster-dns <ips>", "comma-separated cluster DNS server IPs for pods")
    .option(
      "--dns-listen <ip:port>",
      "where the node-local cluster DNS listens; cluster DNS IP:53 is DNATed to it (default <node-ip>:10053)",
    )
    .option(
      "--resolv-conf <path>",
      "nameservers for names outside the cluster domain (empty: answer those REFUSED)",
      "/etc/resolv.conf",
    )
    .option("--service-cluster-ip-range <cidr>", "the Service ClusterIP range (informational)")
    .option("--state-dir <dir>", "the agent's own state", "/var/lib/lab/agent")
    .option("--register-with-taints <taints>", "taints to register the Node with: key[=value]:Effect,...")
    .option("--node-labels <labels>", "labels to register the Node with: key=value,...")
    .option(
      "--container-runtime-endpoint <socket>",
      "containerd's CRI socket",
      "/run/containerd/containerd.sock",
    )
    .option("--pod-log-dir <dir>", "where container logs go", "/var/log/pods")
    .option("--cgroup-root <path>", "cgroupfs parent of every pod cgroup", "/lab-pods")
    .option("--max-pods <n>", "pods capacity to report", "110")
    .option("--port <port>", "HTTPS port for logs and exec (0: any free port)", String(DEFAULT_AGENT_PORT))
    .option("--address <ip>", "address the HTTPS port listens on", "0.0.0.0")
    .option("--hollow", "run hollow nodes (no containers; see lab-agent --hollow --help)")
    .option("--tls-cert-file <file>", "the agent's serving certificate (without it: no logs/exec endpoint)")
    .option("--tls-private-key-file <file>", "the serving certificate's key")
    .option("--client-ca-file <file>", "CA of lab-server's kubelet-client certificate")
    .addOption(
      new Option(
        "--netns <name>",
        "program routes and the service proxy inside this network namespace (tests)",
      ).hideHelp(),
    );
}

type Log = (msg: string) => void;

/** How long the agent waits for the API to take its Node before it exits (and systemd restarts it). */
export const REGISTER_WAIT_MS = 20 * 60_000;

function describeEvent(e: AgentEvent): string {
  switch (e.kind) {
    case "action":
      return `pod ${e.pod}: ${e.action.kind}${"container" in e.action ? ` ${String(e.action.container)}` : ""}`;
    case "error":
      return `error${e.pod ? ` (pod ${e.pod})` : ""}: ${e.message}`;
    case "unhealthy":
      return `pod ${e.pod}: container ${e.container} failed its ${e.probe} probe`;
  }
}

const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err));
const ignoreNotFound = (err: unknown): void => {
  if (!(err instanceof ApiStatusError && err.code === 404)) throw err;
};

/** Starts everything; resolves to a stop function once the Node is registered. */
export async function runAgent(f: AgentFlags, log: Log, signal: AbortSignal): Promise<() => Promise<void>> {
  const creds = await readKubeconfig(f.kubeconfig);
  const servers = f.apiServers ? list(f.apiServers) : [creds.server];
  const client = new FailoverClient(servers, creds);
  const cri = new CriClient(f.containerRuntimeEndpoint);
  await mkdir(f.stateDir, { recursive: true, mode: 0o700 });
  const prefix = f.netns ? ["nsenter", `--net=/run/netns/${f.netns}`] : [];

  // The logs/exec endpoint first: the Node publishes its port (which may be a free one in tests).
  let server: AgentServer | undefined;
  let sampler: StatsSampler | undefined;
  let kubeletPort: number | undefined;
  if (f.tlsCertFile || f.tlsPrivateKeyFile || f.clientCaFile) {
    if (!f.tlsCertFile || !f.tlsPrivateKeyFile || !f.clientCaFile)
      throw new Error("--tls-cert-file, --tls-private-key-file and --client-ca-file go together");
    sampler = new StatsSampler({
      cri,
      nodeName: f.nodeName,
      onError: (err) => log(`stats: ${errText(err)}`),
    });
    const stats = sampler;
    server = new AgentServer({
      cri,
      stats: () => stats.summary(),
      tls: {
        cert: await readFile(f.tlsCertFile),
        key: await readFile(f.tlsPrivateKeyFile),
        clientCa: await readFile(f.clientCaFile),
      },
      log,
    });
    kubeletPort = await server.start(f.address, Number(f.port));
    log(`serving logs and exec on https://${f.address}:${kubeletPort}`);
  }

  const registration: NodeRegistration = {
    nodeName: f.nodeName,
    nodeIP: f.nodeIp,
    podCIDR: f.podCidr,
    labels: parseLabels(f.nodeLabels ?? ""),
    taints: parseTaints(f.registerWithTaints ?? ""),
    ...(await hostFacts(cri, Number(f.maxPods))),
    ...(kubeletPort !== undefined ? { kubeletPort } : {}),
  };
  const heartbeat = new Heartbeat({
    client,
    cri,
    registration,
    onError: (what, err) => log(`${what}: ${errText(err)} (API ${client.current})`),
  });
  // The API may not be up yet (the node boots with the masters): one named wait on the readiness
  // primitive. Each attempt is bounded (the client's 30 s per request), the whole wait too: past
  // it the agent exits naming what it waited for, and systemd starts it again (Restart=always).
  let registered: V1Node | undefined;
  let pending = 0;
  await waitUntilReady(
    {
      name: `the API (${servers.join(", ")}) to register node ${f.nodeName}`,
      lookAt: "`journalctl -u lab-server` on the masters",
      async probe() {
        try {
          registered = await heartbeat.register();
          return { ready: true };
        } catch (err) {
          return { ready: false, detail: errText(err) };
        }
      },
    },
    {
      timeoutMs: REGISTER_WAIT_MS,
      intervalMs: 2_000,
      // register() makes up to four requests of at most 30 s each.
      attemptTimeoutMs: 130_000,
      signal,
      onPending: (detail) => {
        if (pending++ % 5 === 0) log(`registering node ${f.nodeName}: ${detail ?? "no answer"}; retrying`);
      },
    },
  );
  log(`registered node ${f.nodeName} (podCIDR ${registered?.spec?.podCIDR ?? "none"}) via ${client.current}`);
  heartbeat.start();

  const sink: PodStatusSink = {
    async podStatus(pod, status) {
      // no resourceVersion: status is the agent's alone, so a plain overwrite
      await client
        .updateStatus("pods", {
          apiVersion: "v1",
          kind: "Pod",
          metadata: { name: pod.metadata!.name!, namespace: pod.metadata!.namespace! },
          status,
        })
        .catch(ignoreNotFound);
    },
    async podTerminated(pod) {
      await client
        .delete("pods", pod.metadata!.name!, pod.metadata!.namespace, {
          gracePeriodSeconds: 0,
          preconditions: { uid: pod.metadata!.uid! },
        })
        .catch(ignoreNotFound);
    },
  };
  const lw = clientListWatch(client);
  const informer = <T extends KubeObject>(what: Plural, fieldSelector?: string): Informer<T> =>
    new Informer<T>(lw<T>(what, undefined, fieldSelector ? { fieldSelector } : {}), {
      retryDelayMs: 250,
      maxRetryDelayMs: 5000,
      onError: (err) => log(`watching ${what}: ${errText(err)}`),
    });
  const pods = informer<V1Pod>("pods", `spec.nodeName=${f.nodeName}`);
  const services = informer<V1Service>("services");
  const endpoints = informer<V1Endpoints>("endpoints");
  const nodes = informer<V1Node>("nodes");

  const agent = new PodAgent({
    cri,
    sink,
    pods,
    services,
    nodeName: f.nodeName,
    hostIP: f.nodeIp,
    logRoot: f.podLogDir,
    cgroupRoot: f.cgroupRoot,
    dns: { servers: list(f.clusterDns), clusterDomain: f.clusterDomain },
    volumeRoot: join(f.stateDir, "pods"),
    objects: apiObjectSource(client),
    onEvent: (e) => log(describeEvent(e)),
  });
  await agent.start();

  const watches = new AbortController();
  const stopWatches = (): void => watches.abort();
  signal.addEventListener("abort", stopWatches, { once: true });
  const clusterIPs = list(f.clusterDns);
  const dns = clusterIPs.length
    ? await startDns(
        {
          clusterIPs,
          listen: f.dnsListen ?? `${f.nodeIp}:10053`,
          resolvConf: f.resolvConf,
          clusterDomain: f.clusterDomain,
        },
        log,
      )
    : undefined;
  const loops = [
    ...runNetworkLoops(watches.signal, {
      services,
      endpoints,
      nodes,
      nodeName: f.nodeName,
      clusterDomain: f.clusterDomain,
      prefix,
      dns,
      log,
    }),
    ...[pods, services, endpoints, nodes].map((i) => i.run(watches.signal)),
    ...(sampler ? [sampler.run(watches.signal)] : []),
  ];

  return async () => {
    watches.abort();
    await Promise.allSettled(loops);
    await heartbeat.stop();
    await agent.stop();
    await server?.stop();
    await dns?.server.stop();
    client.close();
    cri.close();
  };
}

export async function main(argv = process.argv): Promise<void> {
  // Hollow nodes (node/hollow/) share the command but none of the real agent's machinery.
  if (argv.includes("--hollow")) return (await import("./hollow/cli.ts")).hollowMain(argv);
  const cmd = agentCommand();
  cmd.parse(argv);
  const flags = cmd.opts<AgentFlags>();
  const log: Log = (msg) => process.stderr.write(`lab-agent: ${msg}\n`);
  const aborted = new AbortController();
  let stop: (() => Promise<void>) | undefined;
  const shutdown = (sig: string): void => {
    log(`${sig}: stopping (containers keep running)`);
    aborted.abort();
    void (stop ? stop() : Promise.resolve()).finally(() => process.exit(0));
  };
  process.once("SIGTERM", () => shutdown("SIGTERM"));
  process.once("SIGINT", () => shutdown("SIGINT"));
  try {
    stop = await runAgent(flags, log, aborted.signal);
    if (aborted.signal.aborted) await stop();
  } catch (err) {
    if (aborted.signal.aborted) return;
    log(`fatal: ${errText(err)}`);
    process.exit(1);
  }
}

// Run when executed (tsx node/main.ts, or the esbuild bundle), not when imported by tests.
const self = fileURLToPath(import.meta.url);
if (process.argv[1] && (process.argv[1] === self || process.argv[1].endsWith("/lab-agent.mjs"))) void main();
