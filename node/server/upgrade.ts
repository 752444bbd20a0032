/**
 * The agent's streaming endpoints (kubelet paths), all HTTP upgrades:
 *
 *   /exec/{ns}/{pod}/{container}?command=...&stdin&stdout&stderr&tty
 *   /attach/{ns}/{pod}/{container}?stdin&stdout&stderr&tty
 *   /portForward/{ns}/{pod}[?ports=8080]
 *
 * Each asks CRI (Exec, Attach, PortForward) for a URL of containerd's streaming server and relays
 * the client to it: SPDY from the client is spliced (streams.ts); WebSocket exec/attach (v5/v4) is
 * translated to the runtime's SPDY (translate.ts: SPDY carries the end of stdin, the runtime's v4
 * WebSocket cannot); port-forward's SPDY tunnelled in WebSocket goes to the runtime's SPDY, and
 * port-forward's WebSocket channels to the runtime's v4 WebSocket, frame for frame.
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import type { CriClient } from "../cri/client.ts";
import type { Container } from "../cri/types.ts";
import { CONTAINER_NAME, POD_NAME, POD_NAMESPACE } from "../labels.ts";
import { chooseSubprotocol, parseExecQuery, type ExecRequest } from "./exec-protocol.ts";
import { ApiError } from "../../api/status.ts";
import {
  openRuntimeWebSocket,
  relayChannels,
  relaySpdy,
  relayTunnel,
  spdyUpgrade,
  SPDY_TUNNEL_PREFIX,
  tunnelledProtocols,
  UpstreamRefused,
} from "./streams.ts";
import { SpdyClientSession } from "./spdy.ts";
import { SPDY_REMOTE_COMMAND, translateRemoteCommand } from "./translate.ts";

export interface StreamTarget {
  kind: "exec" | "attach" | "portForward";
  namespace: string;
  pod: string;
  /** Empty for portForward (a pod-level stream). */
  container: string;
}

export function parseStreamTarget(path: string): StreamTarget | undefined {
  const segs = path.split("/").filter(Boolean).map(decodeURIComponent);
  const [kind, namespace, pod, container] = segs;
  if ((kind === "exec" || kind === "attach") && segs.length === 4)
    return { kind, namespace: namespace!, pod: pod!, container: container! };
  if (kind === "portForward" && segs.length === 3)
    return { kind, namespace: namespace!, pod: pod!, container: "" };
  return undefined;
}

/** Ports of a WebSocket port-forward: `ports=8080,9090` or repeated `ports`/`port`. */
export function parsePorts(q: URLSearchParams): number[] {
  const raw = [...q.getAll("ports"), ...q.getAll("port")].flatMap((v) => v.split(","));
  const ports = raw.map((s) => s.trim()).filter(Boolean);
  if (ports.length === 0)
    throw new ApiError(400, "BadRequest", "a WebSocket port-forward needs at least one port (ports=8080)");
  return ports.map((p) => {
    const n = Number(p);
    if (!/^\d+$/.test(p) || n < 1 || n > 65535)
      throw new ApiError(400, "BadRequest", `invalid port "${p}": ports are 1-65535`);
    return n;
  });
}

export interface StreamDeps {
  cri: CriClient;
  log?: (msg: string) => void;
}

export class StreamServer {
  /** The subprotocol chosen for each request before the WebSocket handshake. */
  private readonly chosen = new WeakMap<IncomingMessage, string>();
  private readonly wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (_offered, req) => this.chosen.get(req) ?? false,
  });
  private readonly sessions = new Set<() => void>();

  constructor(private readonly deps: StreamDeps) {}

  stop(): void {
    for (const end of this.sessions) end();
    this.wss.close();
  }

  async serve(t: StreamTarget, url: URL, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const upgrade = (req.headers.upgrade ?? "").toLowerCase();
    const spdy = upgrade.startsWith("spdy/");
    if (!spdy && upgrade !== "websocket")
      throw new ApiError(
        400,
        "BadRequest",
        `upgrade to "${req.headers.upgrade}" is not supported: use WebSocket (v5.channel.k8s.io, v4.channel.k8s.io) or SPDY/3.1`,
      );
    const offered = (req.headers["sec-websocket-protocol"] ?? "").split(",").map((s) => s.trim());
    const cri = this.deps.cri;
    try {
      if (t.kind === "portForward") {
        const sandbox = await this.sandbox(t);
        const log = (how: string): void => this.deps.log?.(`portForward (${how}) to ${t.namespace}/${t.pod}`);
        if (spdy) {
          log("SPDY");
          return await this.spliced(relaySpdy(await cri.portForward(sandbox, []), req, socket, head), socket);
        }
        const tunnel = tunnelledProtocols(offered);
        if (tunnel.length) {
          log(SPDY_TUNNEL_PREFIX + tunnel.join(","));
          const up = await spdyUpgrade(await cri.portForward(sandbox, []), "POST", tunnel);
          return this.accept(
            req,
            socket,
            head,
            SPDY_TUNNEL_PREFIX + up.protocol,
            (ws) => {
              this.track(ws);
              relayTunnel(ws, up.socket, up.head);
            },
            () => up.socket.destroy(),
          );
        }
        const protocol = this.channelProtocol(offered);
        log(protocol);
        const rt = await openRuntimeWebSocket(await cri.portForward(sandbox, parsePorts(url.searchParams)));
        return this.accept(
          req,
          socket,
          head,
          protocol,
          (ws) => this.relay(ws, rt),
          () => rt.terminate(),
        );
      }
      const q = url.searchParams;
      const exec = t.kind === "exec" ? parseQuery(q) : undefined;
      const io = exec
        ? { tty: exec.tty, stdin: exec.stdin, stdout: exec.stdout, stderr: exec.stderr && !exec.tty }
        : ioOf(q);
      const run = await this.runningContainer(t);
      const streamUrl = (): Promise<string> =>
        exec ? cri.exec(run.id, exec.command, io) : cri.attach(run.id, io);
      if (spdy) {
        this.deps.log?.(`${t.kind} (SPDY) in ${run.id}${exec ? `: ${exec.command.join(" ")}` : ""}`);
        return await this.spliced(relaySpdy(await streamUrl(), req, socket, head), socket);
      }
      const protocol = this.channelProtocol(offered);
      this.deps.log?.(`${t.kind} (${protocol}) in ${run.id}${exec ? `: ${exec.command.join(" ")}` : ""}`);
      const up = await spdyUpgrade(await streamUrl(), "POST", [SPDY_REMOTE_COMMAND]);
      return this.accept(
        req,
        socket,
        head,
        protocol,
        (ws) => {
          this.track(ws);
          translateRemoteCommand(ws, new SpdyClientSession(up.socket, up.head), io);
        },
        () => up.socket.destroy(),
      );
    } catch (err) {
      if (err instanceof UpstreamRefused)
        throw new ApiError(err.code >= 500 ? 502 : err.code, "BadGateway", err.message);
      throw err;
    }
  }

  private channelProtocol(offered: string[]): string {
    const p = chooseSubprotocol(offered);
    if (!p)
      throw new ApiError(
        400,
        "BadRequest",
        `none of the offered subprotocols (${offered.join(", ")}) is supported: use v5.channel.k8s.io or v4.channel.k8s.io`,
      );
    return p;
  }

  /** Completes the client's WebSocket handshake with `protocol`; `abandon` runs if it never completes. */
  private accept(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    protocol: string,
    onOpen: (ws: WebSocket) => void,
    abandon?: () => void,
  ): void {
    this.chosen.set(req, protocol);
    let opened = false;
    socket.once("close", () => {
      if (!opened) abandon?.();
    });
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      opened = true;
      onOpen(ws);
    });
  }

  private relay(ws: WebSocket, runtime: WebSocket): void {
    this.track(ws);
    relayChannels(ws, runtime);
  }

  /** A spliced SPDY session ends with the agent too. */
  private async spliced(relay: Promise<void>, socket: Duplex): Promise<void> {
    await relay;
    const end = (): void => void socket.destroy();
    this.sessions.add(end);
    socket.on("close", () => this.sessions.delete(end));
  }

  private track(ws: WebSocket): void {
    const end = (): void => ws.terminate();
    this.sessions.add(end);
    ws.on("close", () => this.sessions.delete(end));
  }

  private async runningContainer(t: StreamTarget): Promise<Container> {
    const all = await this.deps.cri.listContainers({
      labelSelector: { [POD_NAMESPACE]: t.namespace, [POD_NAME]: t.pod, [CONTAINER_NAME]: t.container },
    });
    const run = all.sort((a, b) => b.metadata.attempt - a.metadata.attempt || b.createdAt - a.createdAt)[0];
    if (!run || run.state !== "CONTAINER_RUNNING")
      throw new ApiError(400, "BadRequest", `container "${t.container}" in pod "${t.pod}" is not running`);
    return run;
  }

  private async sandbox(t: StreamTarget): Promise<string> {
    const all = await this.deps.cri.listPodSandbox({ [POD_NAMESPACE]: t.namespace, [POD_NAME]: t.pod });
    const ready = all.filter((s) => s.state === "SANDBOX_READY").sort((a, b) => b.createdAt - a.createdAt)[0];
    if (!ready)
      throw new ApiError(
        400,
        "BadRequest",
        `pod "${t.pod}" has no running sandbox on this node to forward to`,
      );
    return ready.id;
  }
}

function parseQuery(q: URLSearchParams): ExecRequest {
  try {
    return parseExecQuery(q);
  } catch (err) {
    throw new ApiError(400, "BadRequest", (err as Error).message);
  }
}

/** attach's stdin/stdout/stderr/tty flags (the same names as exec's). */
function ioOf(q: URLSearchParams): { tty: boolean; stdin: boolean; stdout: boolean; stderr: boolean } {
  const bool = (k: string): boolean => q.get(k) === "true" || q.get(k) === "1";
  const tty = bool("tty");
  return {
    tty,
    stdin: bool("stdin") || bool("input"),
    stdout: bool("stdout") || bool("output"),
    // a TTY merges stderr into stdout (CRI refuses both)
    stderr: !tty && (bool("stderr") || bool("error")),
  };
}
