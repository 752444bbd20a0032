import { join } from "node:path";
import { buildImageArchive, PAUSE, SAMPLE, type ImageSpec } from "../../images/oci/build.ts";
import {
  labAgentHostFiles,
  NODE_CONTAINERD,
  renderLabAgentUnit,
  renderNodeCniConfig,
  renderNodeContainerdConfig,
} from "../../templates/lab-agent.ts";
import { HOST_PATHS } from "../../templates/paths.ts";
import type { Plan, PlannedNode } from "../../topology/plan.ts";
import { apiEndpoint, renderKubeconfig } from "../kubeconfig.ts";
import { emptyWork, type NodeFacts } from "../applied.ts";
import type { Machine } from "../../provisioners/provisioner.ts";
import {
  applyOnNodes,
  ensureUnitRunning,
  installFiles,
  reloadIfNeeded,
  type RemoteFile,
  type StepContext,
  type StepOutcome,
} from "./context.ts";
import { executable, executableUploads, installExecutable } from "./control-plane.ts";
import { sha256OfFile } from "../../lib/digest.ts";
import { shq, type SshSession } from "../../ssh/session.ts";
import { agentServingFiles, nodeIdentityFiles } from "./files.ts";

export const CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane:NoSchedule";

/** The agent's view of the API: the VIP first, then every master, so it fails over on its own. */
export function agentApiServers(plan: Plan): string[] {
  const port = plan.cluster.apiServerPort;
  return [...new Set([apiEndpoint(plan), ...plan.masters.map((m) => `https://${m.address}:${port}`)])];
}

export function agentConfig(plan: Plan, node: PlannedNode) {
  const master = node.role === "master";
  return {
    nodeName: node.name,
    nodeIP: node.address,
    podCIDR: node.podCIDR,
    apiServers: agentApiServers(plan),
    clusterDomain: plan.cluster.domain,
    clusterDNS: plan.cluster.dnsServiceIP,
    serviceClusterIPRange: plan.cluster.serviceCIDR,
    taints: master ? [CONTROL_PLANE_TAINT] : [],
    labels: { ...(master ? { "node-role.kubernetes.io/control-plane": "" } : {}), ...node.labels },
  };
}

/** An OCI archive built on the lab host for every node's containerd. */
export interface ImageArchive {
  name: string;
  local: string;
  remote: string;
  sha256: string;
}

/** The pause and sample images, built once per run into the lab state (byte-identical each time). */
const archives = new Map<string, Promise<ImageArchive[]>>();
export function nodeImages(ctx: Pick<StepContext, "state">): Promise<ImageArchive[]> {
  let a = archives.get(ctx.state.dir);
  if (!a) {
    a = Promise.all(
      [PAUSE, SAMPLE].map(async (spec: ImageSpec) => {
        const file = `${spec.name.replace(/^docker\.io\//, "").replace(/[/:]/g, "_")}.tar`;
        const local = join(ctx.state.path("artifacts"), file);
        await buildImageArchive(spec, local);
        return {
          name: spec.name,
          local,
          remote: `${NODE_CONTAINERD.imagesDir}/${file}`,
          sha256: await sha256OfFile(local),
        };
      }),
    );
    a.catch(() => archives.delete(ctx.state.dir));
    archives.set(ctx.state.dir, a);
  }
  return a;
}

/** containerd's config and the node's CNI conflist (its pod CIDR). Pure. */
export function containerdFiles(podCIDR: string): RemoteFile[] {
  return [
    { path: NODE_CONTAINERD.config, data: renderNodeContainerdConfig() },
    { path: NODE_CONTAINERD.cniConf, data: renderNodeCniConfig(podCIDR) },
  ];
}

/**
 * containerd as the node's runtime: config and CNI conflist written, the unit unmasked (the guest
 * image masks it so it stays off until lab configures it), enabled and (re)started when its config
 * changed. Restarting containerd leaves running containers alone (their shims outlive it). Resolves
 * with the number of changes: files written, plus one when it had to start containerd.
 */
export async function ensureContainerd(
  s: SshSession,
  podCIDR: string,
  signal?: AbortSignal,
): Promise<number> {
  const n = await installFiles(s, containerdFiles(podCIDR), signal);
  const unit = "containerd.service";
  // One exec for the rest (each costs seconds on a busy guest). A daemon-reload only when the
  // manager holds the unit as masked (plain unmask and enable reload it by themselves, twice, even
  // when nothing changes).
  const start = await s.run(
    `install -d -m 0755 /etc/containerd ${NODE_CONTAINERD.cniConfDir} ${NODE_CONTAINERD.imagesDir}\n` +
      `st=$(systemctl is-enabled ${unit} 2>/dev/null)\n` +
      `case "$st" in masked*) systemctl unmask --no-reload ${unit} >/dev/null 2>&1; ${reloadIfNeeded(unit)};; esac\n` +
      `[ "$st" = enabled ] || systemctl enable --no-reload ${unit} >/dev/null 2>&1\n` +
      // --no-block: on a busy TCG master (etcd, lab-server) systemd alone can take minutes to
      // report the start; the socket below is what matters.
      (n > 0
        ? `systemctl restart --no-block ${unit}\n`
        : `systemctl is-active --quiet ${unit} || { systemctl start --no-block ${unit} && echo started; }\n`) +
      `for i in $(seq 1 1200); do ctr --address ${NODE_CONTAINERD.socket} version >/dev/null 2>&1 && exit 0; sleep 0.2; done\n` +
      `ctr --address ${NODE_CONTAINERD.socket} version`,
    { root: true, what: "starting containerd and waiting for its socket", timeoutMs: 300_000, signal },
  );
  return n + (/^started$/m.test(start) ? 1 : 0);
}

/**
 * Uploads and imports the image archives; an archive is skipped when unchanged and its image is
 * there. A constant number of round trips whatever the number of images: one upload batch, one
 * listing, one import exec.
 */
export async function importNodeImages(
  s: SshSession,
  images: ImageArchive[],
  signal?: AbortSignal,
): Promise<number> {
  const ctr = `ctr --address ${NODE_CONTAINERD.socket} --namespace k8s.io`;
  const uploaded = new Set(
    await s.uploadMany(
      images.map((img) => ({
        source: { file: img.local, sha256: img.sha256 },
        remotePath: img.remote,
        mode: 0o644,
      })),
      { signal },
    ),
  );
  const present = new Set(
    (await s.run(`${ctr} images ls -q`, { root: true, signal }))
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean),
  );
  const todo = images.filter((img) => uploaded.has(img.remote) || !present.has(img.name));
  if (!todo.length) return 0;
  await s.run(todo.map((img) => `${ctr} images import ${shq(img.remote)} >/dev/null`).join(" && "), {
    root: true,
    what: `importing ${todo.map((img) => img.name).join(", ")}`,
    signal,
  });
  return todo.length;
}

/** What the node-side runtime part of join-nodes changed: containerd and images, lab-agent's files. */
interface RuntimeChanges {
  runtime: number;
  executable: number;
}

/** containerd running with the lab's images, and lab-agent's runtime and bundle on the node. */
async function installRuntime(ctx: StepContext, m: Machine, s: SshSession): Promise<RuntimeChanges> {
  const node = ctx.planned(m.name);
  const [agent, images] = await Promise.all([executable(ctx, "lab-agent"), nodeImages(ctx)]);
  const runtime =
    (await ensureContainerd(s, node.podCIDR, ctx.signal)) + (await importNodeImages(s, images, ctx.signal));
  return { runtime, executable: await installExecutable(s, agent, ctx.signal) };
}

/**
 * Nodes whose runtime part starts with the bootstrap instead of waiting for etcd, lab-server and the
 * VIP: the workers (idle until join-nodes otherwise) and machines at native speed sharing this host
 * (nspawn: their masters are not starved by it), on their first join only (no join-nodes marker
 * yet), so a rerun still skips a node whose result stands without a round trip. Pure.
 */
export function joinsEarly(m: Machine, facts: Pick<NodeFacts, "applied">): boolean {
  return (m.role === "worker" || m.sharesHostClock === true) && !facts.applied.has("join-nodes");
}

/** The runtime parts started early, per run (keyed by the run's sessions), per node. */
const early = new WeakMap<object, Map<string, Promise<RuntimeChanges>>>();

/**
 * join-nodes' `prepare`: starts the runtime part on the nodes that join early. The step takes the
 * result; a failure here is not reported on its own, the step runs the part again and reports it.
 */
export function startEarlyRuntime(ctx: StepContext): Promise<unknown> {
  const runs = new Map<string, Promise<RuntimeChanges>>();
  early.set(ctx.sessions, runs);
  return Promise.all(
    ctx.plan.nodes.map(async (n) => {
      const m = ctx.machine(n.name);
      if (!joinsEarly(m, await ctx.facts(m))) return;
      const started = Date.now();
      const p = (async () => {
        ctx.reporter.event({
          step: "join-nodes.runtime",
          node: m.name,
          state: "start",
          message: "containerd, images, lab-agent's files, while the control plane starts",
        });
        const r = await installRuntime(ctx, m, await ctx.sessions.get(m));
        ctx.reporter.event({
          step: "join-nodes.runtime",
          node: m.name,
          state: "done",
          elapsedMs: Date.now() - started,
        });
        return r;
      })();
      runs.set(m.name, p);
      await p;
    }),
  );
}

/** The early runtime part of node `m` in this run, if it succeeded; taken once. */
async function takeEarlyRuntime(ctx: StepContext, m: Machine): Promise<RuntimeChanges | undefined> {
  const runs = early.get(ctx.sessions);
  const p = runs?.get(m.name);
  if (!p) return undefined;
  runs!.delete(m.name);
  return await p.catch(() => undefined);
}

/**
 * On every node: containerd configured and running with the lab's pause and sample images, then
 * lab-agent with its own client certificate (CN=system:node:NAME).
 */
export async function joinNodesStep(ctx: StepContext): Promise<StepOutcome> {
  const [agent, images] = await Promise.all([executable(ctx, "lab-agent"), nodeImages(ctx)]);
  const f = labAgentHostFiles();
  const machines = ctx.plan.nodes.map((n) => ctx.machine(n.name));
  const { changed } = await applyOnNodes(ctx, "join-nodes.install", machines, {
    async work(m) {
      const node = ctx.planned(m.name);
      const kubeconfig = renderKubeconfig({
        cluster: ctx.plan.lab,
        user: `system:node:${node.name}`,
        server: apiEndpoint(ctx.plan),
        ca: { file: f.ca },
        cert: { file: f.cert },
        key: { file: f.key },
      });
      return {
        ...emptyWork(),
        files: [
          ...containerdFiles(node.podCIDR),
          ...(await nodeIdentityFiles(ctx.state, node.name)),
          ...(await agentServingFiles(ctx.state, node.name)),
          { path: f.kubeconfig, data: kubeconfig, mode: 0o600 },
          {
            path: `${HOST_PATHS.unitDir}/lab-agent.service`,
            data: renderLabAgentUnit(agentConfig(ctx.plan, node)),
          },
        ],
        uploads: [
          ...images.map((i) => ({ path: i.remote, sha256: i.sha256, mode: 0o644 })),
          ...(await executableUploads(agent)),
        ],
        units: ["containerd.service", "lab-agent.service"],
        images: images.map((i) => i.name),
      };
    },
    async apply(m, s, work) {
      const node = ctx.planned(m.name);
      const { runtime, executable: exe } =
        (await takeEarlyRuntime(ctx, m)) ?? (await installRuntime(ctx, m, s));
      let n = exe;
      await s.run(`install -d -m 0700 ${f.stateDir} && install -d -m 0755 ${HOST_PATHS.etc}/agent`, {
        root: true,
      });
      const containerd = new Set(containerdFiles(node.podCIDR).map((c) => c.path));
      n += await installFiles(
        s,
        work.files.filter((w) => !containerd.has(w.path)),
        ctx.signal,
      );
      return (await ensureUnitRunning(s, "lab-agent.service", n > 0)) || n + runtime > 0;
    },
  });
  return { changed: changed > 0, message: `lab-agent on ${machines.length} nodes` };
}
