/**
 * lab-agent's HTTPS endpoint (the kubelet's port 10250): container logs, streams and stats, for lab-server
 * only. TLS requires a client certificate from the cluster CA, and of those only the apiserver's
 * kubelet-client identity (KUBELET_CLIENT_CN in O=system:masters) is let in: a node's or a user's
 * certificate from the same CA gets 403.
 *
 *   GET /containerLogs/{ns}/{pod}/{container}?follow&tailLines&previous&timestamps&sinceSeconds&limitBytes
 *   /exec, /attach, /portForward: WebSocket or SPDY upgrades, served by upgrade.ts
 *   GET /stats/summary   (resource usage for metrics.k8s.io)
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import { open, stat } from "node:fs/promises";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import type { CriClient } from "../cri/client.ts";
import type { Container } from "../cri/types.ts";
import { CONTAINER_NAME, POD_NAME, POD_NAMESPACE } from "../labels.ts";
import { formatLine, parseCriLog, parseLogQuery, selectLines, type LogOptions } from "./cri-log.ts";
import { ApiError } from "../../api/status.ts";
import { parseStreamTarget, StreamServer } from "./upgrade.ts";
import { listen } from "../../lib/listen.ts";

/** The subject lab-server's kubelet-client certificate carries (bootstrap/pki.ts issues it). */
export const KUBELET_CLIENT_CN = "lab-apiserver-kubelet-client";
export const KUBELET_CLIENT_GROUP = "system:masters";
export const DEFAULT_AGENT_PORT = 10250;

export interface AgentServerOptions {
  cri: CriClient;
  tls: { cert: Buffer; key: Buffer; clientCa: Buffer };
  /** GET /stats/summary: the node's and its containers' usage (node/stats.ts); 404 without it. */
  stats?: () => unknown;
  log?: (msg: string) => void;
}

interface Target {
  kind: "containerLogs";
  namespace: string;
  pod: string;
  container: string;
}

function parseTarget(path: string): Target | undefined {
  const segs = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (segs.length !== 4 || segs[0] !== "containerLogs") return undefined;
  return { kind: segs[0], namespace: segs[1]!, pod: segs[2]!, container: segs[3]! };
}

export class AgentServer {
  private server: Server | undefined;
  private readonly streams: StreamServer;

  constructor(private readonly opts: AgentServerOptions) {
    this.streams = new StreamServer(opts);
  }

  async start(host: string, port: number): Promise<number> {
    const server = createServer(
      {
        cert: this.opts.tls.cert,
        key: this.opts.tls.key,
        ca: this.opts.tls.clientCa,
        requestCert: true,
        // a certificate from another CA (or none) never completes the handshake
        rejectUnauthorized: true,
      },
      (req, res) => void this.handle(req, res),
    );
    server.on(
      "upgrade",
      (req: IncomingMessage, socket: Duplex, head: Buffer) => void this.upgrade(req, socket, head),
    );
    this.server = server;
    return listen(server, host, port);
  }

  async stop(): Promise<void> {
    this.streams.stop();
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private authorize(req: IncomingMessage): void {
    const sock = req.socket as TLSSocket;
    const subject = sock.getPeerCertificate()?.subject;
    const cn = subject?.CN;
    const o = subject?.O;
    const groups = o === undefined ? [] : Array.isArray(o) ? o : [o];
    if (!sock.authorized || cn !== KUBELET_CLIENT_CN || !groups.includes(KUBELET_CLIENT_GROUP)) {
      throw new ApiError(
        403,
        "Forbidden",
        `only lab-server's kubelet-client certificate (CN=${KUBELET_CLIENT_CN}, O=${KUBELET_CLIENT_GROUP}) may use the agent's API; got CN=${String(cn)}`,
      );
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      this.authorize(req);
      const url = new URL(req.url ?? "/", "https://agent");
      if (url.pathname === "/healthz") {
        res.writeHead(200, { "Content-Type": "text/plain" }).end("ok");
        return;
      }
      if (url.pathname === "/stats/summary" && this.opts.stats) {
        if (req.method !== "GET") throw new ApiError(405, "MethodNotAllowed", `${req.method} is not allowed`);
        const body = JSON.stringify(this.opts.stats());
        res
          .writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) })
          .end(body);
        return;
      }
      if (parseStreamTarget(url.pathname))
        throw new ApiError(
          400,
          "BadRequest",
          "Upgrade request required: exec, attach and portForward speak WebSocket (v5.channel.k8s.io, v4.channel.k8s.io) or SPDY/3.1",
        );
      const target = parseTarget(url.pathname);
      if (!target) throw new ApiError(404, "NotFound", `no such path ${url.pathname}`);
      if (req.method !== "GET") throw new ApiError(405, "MethodNotAllowed", `${req.method} is not allowed`);
      let opts: ReturnType<typeof parseLogQuery>;
      try {
        opts = parseLogQuery(url.searchParams);
      } catch (err) {
        throw new ApiError(400, "BadRequest", (err as Error).message);
      }
      await this.serveLogs(target, opts, req, res);
    } catch (err) {
      const e = err instanceof ApiError ? err : new ApiError(500, "InternalError", (err as Error).message);
      if (res.headersSent) {
        res.end();
        return;
      }
      const body = JSON.stringify(e.toStatus());
      res
        .writeHead(e.code, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) })
        .end(body);
    }
  }

  /** The pod's runs of one container, newest first (the agent keeps the latest and the one before). */
  private async attempts(t: Target): Promise<Container[]> {
    const all = await this.opts.cri.listContainers({
      labelSelector: { [POD_NAMESPACE]: t.namespace, [POD_NAME]: t.pod, [CONTAINER_NAME]: t.container },
    });
    return all.sort((a, b) => b.metadata.attempt - a.metadata.attempt || b.createdAt - a.createdAt);
  }

  private async serveLogs(
    t: Target,
    opts: ReturnType<typeof parseLogQuery>,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> {
    const runs = await this.attempts(t);
    const run = opts.previous ? runs[1] : runs[0];
    if (!run) {
      throw new ApiError(
        opts.previous ? 400 : 404,
        opts.previous ? "BadRequest" : "NotFound",
        opts.previous
          ? `previous terminated container "${t.container}" in pod "${t.pod}" not found`
          : `container "${t.container}" in pod "${t.pod}" is not known to this node's runtime`,
      );
    }
    const status = await this.opts.cri.containerStatus(run.id);
    const path = status.logPath;
    if (!path) throw new ApiError(404, "NotFound", `container "${t.container}" has no log file`);
    res.writeHead(200, { "Content-Type": "text/plain", "Transfer-Encoding": "chunked" });
    res.flushHeaders(); // a followed, still empty log must not look like a hung agent
    await streamLog(
      path,
      opts,
      opts.follow && !opts.previous ? () => this.isRunning(run.id) : undefined,
      req,
      res,
    );
  }

  private async isRunning(id: string): Promise<boolean> {
    const s = await this.opts.cri.containerStatus(id).catch(() => undefined);
    return s?.state === "CONTAINER_RUNNING";
  }

  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    // Node drops its own error handler from an upgraded socket: a client reset must not kill the agent
    socket.on("error", () => socket.destroy());
    try {
      this.authorize(req);
      const url = new URL(req.url ?? "/", "https://agent");
      const target = parseStreamTarget(url.pathname);
      if (!target) throw new ApiError(404, "NotFound", `no streaming endpoint at ${url.pathname}`);
      await this.streams.serve(target, url, req, socket, head);
    } catch (err) {
      const e = err instanceof ApiError ? err : new ApiError(500, "InternalError", (err as Error).message);
      const body = JSON.stringify(e.toStatus());
      socket.end(
        `HTTP/1.1 ${e.code} ${e.reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    }
  }
}

/** Writes the selected lines of a CRI log file; with `stillRunning`, keeps following appended lines. */
async function streamLog(
  path: string,
  opts: LogOptions,
  stillRunning: (() => Promise<boolean>) | undefined,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  let budget = opts.limitBytes ?? Infinity;
  const write = (s: string): boolean => {
    if (budget <= 0) return false;
    const buf = Buffer.from(s);
    const out = buf.length > budget ? buf.subarray(0, budget) : buf;
    budget -= out.length;
    res.write(out);
    return budget > 0;
  };
  const fh = await open(path, "r").catch(() => undefined);
  if (!fh) {
    res.end();
    return;
  }
  let closed = false;
  req.on("close", () => (closed = true));
  res.on("close", () => (closed = true));
  try {
    const size = (await fh.stat()).size;
    const buf = Buffer.alloc(size);
    await fh.read(buf, 0, size, 0);
    let offset = size;
    let parsed = parseCriLog(buf.toString("utf8"));
    for (const l of selectLines(parsed.lines, opts)) if (!write(formatLine(l, opts))) break;
    if (!stillRunning) return;
    // Follow: new lines after the ones shown, until the container stops or the client leaves.
    let rest = parsed.rest;
    let lastCheck = Date.now();
    let running = true;
    while (!closed && budget > 0) {
      const st = await stat(path).catch(() => undefined);
      if (st && st.size > offset) {
        const chunk = Buffer.alloc(st.size - offset);
        await fh.read(chunk, 0, chunk.length, offset);
        offset = st.size;
        parsed = parseCriLog(rest + chunk.toString("utf8"), parsed.partial);
        rest = parsed.rest;
        for (const l of parsed.lines) if (!write(formatLine(l, opts))) break;
        continue;
      }
      if (!running) break; // stopped and everything it wrote is out
      if (Date.now() - lastCheck > 1000) {
        lastCheck = Date.now();
        running = await stillRunning();
        continue;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await fh.close();
    if (!res.writableEnded) res.end();
  }
}
