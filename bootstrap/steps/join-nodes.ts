import { renderLabAgentUnit, labAgentHostFiles } from "../../templates/lab-agent.ts";
import { HOST_PATHS } from "../../templates/paths.ts";
import type { Plan, PlannedNode } from "../../topology/plan.ts";
import { apiEndpoint, renderKubeconfig } from "../kubeconfig.ts";
import {
  ensureUnitRunning,
  forEachMachine,
  installFiles,
  type StepContext,
  type StepOutcome,
} from "./context.ts";
import { executable, installExecutable } from "./control-plane.ts";
import { nodeIdentityFiles } from "./files.ts";

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

/** lab-agent on every node, with its own client certificate (CN=system:node:NAME). */
export async function joinNodesStep(ctx: StepContext): Promise<StepOutcome> {
  const agent = await executable(ctx, "lab-agent");
  const f = labAgentHostFiles();
  const machines = ctx.plan.nodes.map((n) => ctx.machine(n.name));
  const changed = await forEachMachine(ctx, "join-nodes.install", machines, async (m, s) => {
    const node = ctx.planned(m.name);
    let n = await installExecutable(s, agent, ctx.signal);
    await s.run(`install -d -m 0700 ${f.stateDir} && install -d -m 0755 ${HOST_PATHS.etc}/agent`, {
      root: true,
    });
    const kubeconfig = renderKubeconfig({
      cluster: ctx.plan.lab,
      user: `system:node:${node.name}`,
      server: apiEndpoint(ctx.plan),
      ca: { file: f.ca },
      cert: { file: f.cert },
      key: { file: f.key },
    });
    n += await installFiles(
      s,
      [
        ...(await nodeIdentityFiles(ctx.state, node.name)),
        { path: f.kubeconfig, data: kubeconfig, mode: 0o600 },
        {
          path: `${HOST_PATHS.unitDir}/lab-agent.service`,
          data: renderLabAgentUnit(agentConfig(ctx.plan, node)),
        },
      ],
      ctx.signal,
    );
    await ensureUnitRunning(s, "lab-agent.service", n > 0);
    return n > 0;
  });
  return { changed: changed > 0, message: `lab-agent on ${machines.length} nodes` };
}
