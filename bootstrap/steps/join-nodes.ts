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
import { emptyWork } from "../applied.ts";
import {
  applyOnNodes,
  ensureUnitRunning,
  installFiles,
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
export function nodeImages(ctx: StepContext): Promise<ImageArchive[]> {
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
  await s.run(
    `install -d -m 0755 /etc/containerd ${NODE_CONTAINERD.cniConfDir} ${NODE_CONTAINERD.imagesDir}`,
    {
      root: true,
    },
  );
  const n = await installFiles(s, containerdFiles(podCIDR), signal);
  const unit = "containerd.service";
  const start = await s.run(
    `systemctl unmask ${unit} >/dev/null 2>&1; systemctl enable ${unit} >/dev/null 2>&1; ` +
      // --no-block: on a busy TCG master (etcd, lab-server) systemd alone can take minutes to
      // report the start; the socket below is what matters.
      (n > 0
        ? `systemctl restart --no-block ${unit}`
        : `systemctl is-active --quiet ${unit} || { systemctl start --no-block ${unit} && echo started; }`),
    { root: true, what: "starting containerd", timeoutMs: 300_000, signal },
  );
  await s.run(
    `for i in $(seq 1 1200); do ctr --address ${NODE_CONTAINERD.socket} version >/dev/null 2>&1 && exit 0; sleep 0.2; done; ` +
      `ctr --address ${NODE_CONTAINERD.socket} version`,
    { root: true, what: "waiting for containerd's socket", timeoutMs: 300_000, signal },
  );
  return n + (start.trim() === "started" ? 1 : 0);
}

/** Uploads and imports the image archives; skipped when the archive is unchanged and the image is there. */
export async function importNodeImages(
  s: SshSession,
  images: ImageArchive[],
  signal?: AbortSignal,
): Promise<number> {
  const ctr = `ctr --address ${NODE_CONTAINERD.socket} --namespace k8s.io`;
  let n = 0;
  for (const img of images) {
    const uploaded = await s.upload({ file: img.local, sha256: img.sha256 }, img.remote, {
      mode: 0o644,
      signal,
    });
    const present = (await s.run(`${ctr} images ls -q name==${shq(img.name)}`, { root: true })).trim() !== "";
    if (uploaded === "unchanged" && present) continue;
    await s.run(`${ctr} images import ${shq(img.remote)} >/dev/null`, {
      root: true,
      what: `importing ${img.name}`,
    });
    n++;
  }
  return n;
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
      const runtime =
        (await ensureContainerd(s, node.podCIDR, ctx.signal)) +
        (await importNodeImages(s, images, ctx.signal));
      let n = await installExecutable(s, agent, ctx.signal);
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
