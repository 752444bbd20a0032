/**
 * pods/log, exec, attach and portforward: lab-server finds the pod's node and forwards the request
 * to that node's lab-agent (InternalIP : daemonEndpoints.kubeletEndpoint.Port), over TLS verified
 * against the cluster CA, as the kubelet-client identity. Logs are a plain streamed GET; the others
 * are upgrades (WebSocket, or SPDY/3.1 for kubectl's fallback) whose bytes are spliced through
 * unchanged, as kube-apiserver's upgrade-aware proxy does; the agent speaks the protocols.
 */
import type { V1Node, V1Pod } from "@kubernetes/client-node";
import type { IncomingMessage, ServerResponse } from "node:http";
import { request, type RequestOptions } from "node:https";
import type { Duplex } from "node:stream";
import { ApiError } from "../api/status.ts";

export interface KubeletClientTls {
  cert: Buffer;
  key: Buffer;
  /** CA the agents' serving certificates are verified against. */
  ca: Buffer;
}

export interface NodeTarget {
  host: string;
  port: number;
  container: string;
}

/** Where a pod's container is served, or the Status a user should see. Pure. */
export function nodeTarget(pod: V1Pod, node: V1Node | undefined, requested: string | null): NodeTarget {
  const name = pod.metadata?.name ?? "";
  const containers = (pod.spec?.containers ?? []).map((c) => c.name);
  const init = (pod.spec?.initContainers ?? []).map((c) => c.name);
  let container = requested ?? "";
  if (!container) {
    if (containers.length !== 1)
      throw new ApiError(
        400,
        "BadRequest",
        `a container name must be specified for pod ${name}, choose one of: [${containers.join(" ")}]`,
      );
    container = containers[0]!;
  }
  if (!containers.includes(container) && !init.includes(container))
    throw new ApiError(400, "BadRequest", `container ${container} is not valid for pod ${name}`);
  const nodeName = pod.spec?.nodeName;
  if (!nodeName) throw new ApiError(400, "BadRequest", `pod ${name} does not have a host assigned`);
  if (!node) throw new ApiError(404, "NotFound", `nodes "${nodeName}" not found`);
  const ip = node.status?.addresses?.find((a) => a.type === "InternalIP")?.address;
  const port = node.status?.daemonEndpoints?.kubeletEndpoint?.Port;
  if (!ip || !port)
    throw new ApiError(
      503,
      "ServiceUnavailable",
      `node "${nodeName}" has not published its InternalIP and agent port yet`,
    );
  return { host: ip, port, container };
}

/** exec needs a running container; the pod's status says so before the node is asked. Pure. */
export function assertRunning(pod: V1Pod, container: string): void {
  const name = pod.metadata?.name ?? "";
  const phase = pod.status?.phase;
  if (phase === "Succeeded" || phase === "Failed")
    throw new ApiError(
      400,
      "BadRequest",
      `cannot exec into a container in a completed pod; current phase is ${phase}`,
    );
  const statuses = [...(pod.status?.containerStatuses ?? []), ...(pod.status?.initContainerStatuses ?? [])];
  const st = statuses.find((c) => c.name === container);
  if (!st?.state?.running) {
    const why = st?.state?.waiting?.reason ?? (st?.state?.terminated ? "Terminated" : "ContainerCreating");
    throw new ApiError(
      400,
      "BadRequest",
      `container ${container} is not running in pod ${name} (${why}): exec needs a running container`,
    );
  }
}

/** port-forward needs the pod's sandbox up: upstream's kubelet answers this for a pod not running. Pure. */
export function assertPodRunning(pod: V1Pod): void {
  const phase = pod.status?.phase;
  if (phase !== "Running")
    throw new ApiError(
      400,
      "BadRequest",
      `unable to forward port because pod is not running. Current status=${phase ?? "Pending"}`,
    );
}

/** Logs exist once the container has started (or, for previous, once it has restarted). Pure. */
export function assertLogsAvailable(pod: V1Pod, container: string, previous: boolean): void {
  const statuses = [...(pod.status?.containerStatuses ?? []), ...(pod.status?.initContainerStatuses ?? [])];
  const st = statuses.find((c) => c.name === container);
  if (previous || st?.state?.running || st?.state?.terminated || st?.lastState?.terminated) return;
  throw new ApiError(
    400,
    "BadRequest",
    `container "${container}" in pod "${pod.metadata?.name ?? ""}" is waiting to start: ${st?.state?.waiting?.reason ?? "ContainerCreating"}`,
  );
}

const AGENT_PATHS = { log: "containerLogs", exec: "exec", attach: "attach", portforward: "portForward" };

/** The agent path for a subresource request; the user's query passes through (minus `container`). */
export function agentPath(
  kind: keyof typeof AGENT_PATHS,
  pod: V1Pod,
  t: NodeTarget,
  q: URLSearchParams,
): string {
  const query = new URLSearchParams(q);
  query.delete("container");
  const parts = [
    pod.metadata!.namespace!,
    pod.metadata!.name!,
    ...(kind === "portforward" ? [] : [t.container]),
  ];
  const qs = query.toString();
  return `/${AGENT_PATHS[kind]}/${parts.map(encodeURIComponent).join("/")}${qs ? `?${qs}` : ""}`;
}

function unreachable(t: NodeTarget, err: Error): ApiError {
  return new ApiError(
    502,
    "ServiceUnavailable",
    `cannot reach the node agent at ${t.host}:${t.port}: ${err.message}`,
  );
}

function tlsOptions(tls: KubeletClientTls, t: NodeTarget): RequestOptions {
  return { host: t.host, port: t.port, cert: tls.cert, key: tls.key, ca: tls.ca, timeout: 10_000 };
}

/** Streams the agent's container log answer to the client (status, body; follow keeps it open). */
export function proxyLogs(
  tls: KubeletClientTls,
  t: NodeTarget,
  path: string,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const up = request({ ...tlsOptions(tls, t), method: "GET", path }, (ur) => {
      up.setTimeout(0); // a followed log may be quiet for long
      res.writeHead(ur.statusCode ?? 502, {
        "Content-Type": ur.headers["content-type"] ?? "text/plain",
        ...(ur.headers["content-length"] ? { "Content-Length": ur.headers["content-length"] } : {}),
      });
      res.flushHeaders();
      ur.pipe(res);
      ur.on("end", () => resolve());
      ur.on("error", () => resolve());
    });
    up.on("timeout", () => up.destroy(new Error("timed out")));
    up.on("error", (err) => (res.headersSent ? resolve() : reject(unreachable(t, err))));
    req.on("close", () => up.destroy());
    res.on("close", () => up.destroy());
    up.end();
  });
}

/** Upgrade headers passed to the agent, each header line kept (SPDY offers one protocol per line). */
const UPGRADE_HEADERS = new Set([
  "upgrade",
  "sec-websocket-key",
  "sec-websocket-version",
  "sec-websocket-protocol",
  "sec-websocket-extensions",
  "x-stream-protocol-version",
]);

/** Splices a client's upgrade (WebSocket or SPDY) through to the agent; a refusal comes back as the agent sent it. */
export function proxyUpgrade(
  tls: KubeletClientTls,
  t: NodeTarget,
  path: string,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<void> {
  const headers: Record<string, string[]> = { Connection: ["Upgrade"] };
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!.toLowerCase();
    if (UPGRADE_HEADERS.has(name)) (headers[name] ??= []).push(req.rawHeaders[i + 1]!);
  }
  return new Promise((resolve, reject) => {
    // the agent answers the upgrade only once the runtime has (CRI call + the runtime's own
    // handshake): on a loaded node that is seconds, so more room than a plain request
    const up = request({
      ...tlsOptions(tls, t),
      timeout: 45_000,
      method: req.method ?? "GET",
      path,
      headers,
    });
    up.on("upgrade", (ur, agent, agentHead) => {
      const lines = [`HTTP/1.1 101 Switching Protocols`];
      for (let i = 0; i < ur.rawHeaders.length; i += 2)
        lines.push(`${ur.rawHeaders[i]}: ${ur.rawHeaders[i + 1]}`);
      socket.write(`${lines.join("\r\n")}\r\n\r\n`);
      if (agentHead.length) socket.write(agentHead);
      if (head.length) agent.write(head);
      agent.setTimeout(0);
      agent.pipe(socket);
      socket.pipe(agent);
      const close = (): void => {
        agent.destroy();
        socket.destroy();
      };
      agent.on("error", close);
      socket.on("error", close);
      agent.on("close", () => socket.end());
      socket.on("close", () => agent.destroy());
      resolve();
    });
    up.on("response", (ur) => {
      // the agent refused (pod not running, bad command, ...): pass its Status on
      const chunks: Buffer[] = [];
      ur.on("data", (d: Buffer) => chunks.push(d));
      ur.on("end", () => {
        const body = Buffer.concat(chunks);
        socket.end(
          `HTTP/1.1 ${ur.statusCode ?? 502} ${ur.statusMessage ?? ""}\r\nContent-Type: ${ur.headers["content-type"] ?? "application/json"}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.toString()}`,
        );
        resolve();
      });
    });
    up.on("timeout", () => up.destroy(new Error("timed out")));
    up.on("error", (err) => reject(unreachable(t, err)));
    up.end();
  });
}

/** Answers an upgrade request with a Status (the socket has no ServerResponse). */
export function rejectUpgrade(socket: Duplex, err: ApiError): void {
  const body = JSON.stringify(err.toStatus());
  socket.end(
    `HTTP/1.1 ${err.code} ${err.reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
