import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { V1Node, V1Pod } from "@kubernetes/client-node";
import { findResource } from "../../../api/resources.ts";
import { ApiError } from "../../../api/status.ts";
import { authorize, forbidden, type NodeGraph, type UserInfo } from "../../authz.ts";
import {
  agentPath,
  assertLogsAvailable,
  assertPodRunning,
  assertRunning,
  nodeTarget,
  proxyLogs,
  proxyUpgrade,
  type KubeletClientTls,
} from "../../node-proxy.ts";
import type { Registry } from "../../registry.ts";
import type { RequestContext } from "../context.ts";
import { cleanPath, parseResourcePath, requestUrl, type Route } from "../request-info.ts";
import { unauthorized } from "../auth.ts";

/** The pod, its node agent and the TLS identity to reach it, or the Status that says why not. */
async function podTarget(
  registry: Registry,
  kubeletClient: KubeletClientTls | undefined,
  r: Route,
  q: URLSearchParams,
) {
  const pod = (await registry.get(r.info, r.namespace, r.name!)) as V1Pod;
  const nodeName = pod.spec?.nodeName;
  const nodes = findResource("", "v1", "nodes")!;
  const node =
    typeof nodeName === "string" && nodeName
      ? ((await registry.get(nodes, undefined, nodeName).catch(() => undefined)) as V1Node | undefined)
      : undefined;
  // port-forward is to the pod's network namespace, not to a container
  const container =
    r.subresource === "portforward" ? (pod.spec?.containers?.[0]?.name ?? null) : q.get("container");
  const target = nodeTarget(pod, node, container);
  if (!kubeletClient)
    throw new ApiError(
      503,
      "ServiceUnavailable",
      `pods/${r.subresource} needs lab-server's kubelet-client certificate (--kubelet-client-certificate, --kubelet-client-key)`,
    );
  return { pod, target, tls: kubeletClient };
}

/**
 * The pod subresources that do not go through the object store (log, exec, attach, portforward):
 * served here, or undefined when the request is for something else.
 */
export async function servePodStream(ctx: RequestContext): Promise<boolean> {
  const { route: r, registry, q } = ctx;
  if (r.info.kind !== "Pod" || !["log", "exec", "attach", "portforward"].includes(r.subresource ?? ""))
    return false;
  if (r.subresource === "log") {
    const { pod, target, tls } = await podTarget(registry, ctx.server.kubeletClient, r, q);
    assertLogsAvailable(pod, target.container, q.get("previous") === "true");
    await proxyLogs(tls, target, agentPath("log", pod, target, q), ctx.req, ctx.reply.res);
    return true;
  }
  await registry.get(r.info, r.namespace, r.name!);
  throw new ApiError(
    400,
    "BadRequest",
    `Upgrade request required: pods/${r.subresource} speaks WebSocket (v5.channel.k8s.io, v4.channel.k8s.io${r.subresource === "portforward" ? ", SPDY/3.1+portforward.k8s.io" : ""}) or SPDY/3.1`,
  );
}

/** Upgrades (WebSocket, SPDY): pods/exec, attach and portforward go through to the node agent. */
export async function serveUpgrade(
  user: UserInfo | undefined,
  registry: Registry,
  graph: NodeGraph,
  kubeletClient: KubeletClientTls | undefined,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<void> {
  if (!user) throw unauthorized();
  const url = requestUrl(req.url);
  const r = parseResourcePath(cleanPath(url.pathname));
  if (
    !r ||
    r.info.kind !== "Pod" ||
    !r.name ||
    !["exec", "attach", "portforward"].includes(r.subresource ?? "")
  )
    throw new ApiError(
      400,
      "BadRequest",
      `${url.pathname} cannot be upgraded: only pods/exec, pods/attach and pods/portforward stream`,
    );
  const attrs = {
    verb: "create",
    info: r.info,
    subresource: r.subresource,
    namespace: r.namespace,
    name: r.name,
  };
  const decision = await authorize(user, attrs, graph);
  if (!decision.allowed) throw forbidden(attrs, decision.reason);
  const kind = r.subresource as "exec" | "attach" | "portforward";
  const { pod, target, tls } = await podTarget(registry, kubeletClient, r, url.searchParams);
  if (kind === "portforward") assertPodRunning(pod);
  else assertRunning(pod, target.container);
  await proxyUpgrade(tls, target, agentPath(kind, pod, target, url.searchParams), req, socket, head);
}
