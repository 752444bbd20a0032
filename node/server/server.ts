/**
 * lab-agent's HTTPS endpoint (the kubelet's port 10250): container logs and exec, for lab-server
 * only. TLS requires a client certificate from the cluster CA, and of those only the apiserver's
 * kubelet-client identity (KUBELET_CLIENT_CN in O=system:masters) is let in: a node's or a user's
 * certificate from the same CA gets 403.
 *
 *   GET /containerLogs/{ns}/{pod}/{container}?follow&tailLines&previous&timestamps&sinceSeconds&limitBytes
 *   GET /exec/{ns}/{pod}/{container}?command=...&stdin&stdout&stderr&tty   (WebSocket upgrade)
 *   GET /stats/summary   (resource usage for metrics.k8s.io)
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import { open, stat } from "node:fs/promises";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import { WebSocketServer, type WebSocket } from "ws";
import type { CriClient } from "../cri/client.ts";
import type { Container } from "../cri/types.ts";
import { CONTAINER_NAME, POD_NAME, POD_NAMESPACE } from "../labels.ts";
import { formatLine, parseCriLog, parseLogQuery, selectLines, type LogOptions } from "./cri-log.ts";
import {
  chooseSubprotocol,
  CLOSE,
  ERROR,
  exitStatus,
  failureStatus,
  frame,
  parseExecQuery,
  STDERR,
  STDIN,
  STDOUT,
  type ExecRequest,
} from "./exec-protocol.ts";

/** The subject lab-server's kubelet-client certificate carries (bootstrap/pki.ts issues it). */
export const KUBELET_CLIENT_CN = "lab-apiserver-kubelet-client";
export const KUBELET_CLIENT_GROUP = "system:masters";
export const DEFAULT_AGENT_PORT = 10250;

export interface AgentServerOptions {
  cri: CriClient;
  /** containerd's socket, for `ctr task exec`. */
  containerdAddress: string;
  tls: { cert: Buffer; key: Buffer; clientCa: Buffer };
  /** GET /stats/summary: the node's and its containers' usage (node/stats.ts); 404 without it. */
  stats?: () => unknown;
  /** ctr binary (tests may point elsewhere). */
  ctr?: string;
  log?: (msg: string) => void;
}

class HttpError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
  status(): Record<string, unknown> {
    return {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: this.message,
      reason: this.reason,
      code: this.code,
    };
  }
}

interface Target {
  kind: "containerLogs" | "exec";
  namespace: string;
  pod: string;
  container: string;
}

function parseTarget(path: string): Target | undefined {
  const segs = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (segs.length !== 4 || (segs[0] !== "containerLogs" && segs[0] !== "exec")) return undefined;
  return { kind: segs[0], namespace: segs[1]!, pod: segs[2]!, container: segs[3]! };
}

export class AgentServer {
  private server: Server | undefined;
  private readonly wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (protocols) => chooseSubprotocol(protocols) ?? false,
  });
  private readonly sessions = new Set<() => void>();

  constructor(private readonly opts: AgentServerOptions) {}

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
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    const addr = server.address();
    return typeof addr === "object" && addr ? addr.port : port;
  }

  async stop(): Promise<void> {
    for (const end of this.sessions) end();
    this.wss.close();
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
      throw new HttpError(
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
        if (req.method !== "GET")
          throw new HttpError(405, "MethodNotAllowed", `${req.method} is not allowed`);
        const body = JSON.stringify(this.opts.stats());
        res
          .writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) })
          .end(body);
        return;
      }
      const target = parseTarget(url.pathname);
      if (!target) throw new HttpError(404, "NotFound", `no such path ${url.pathname}`);
      if (target.kind === "exec")
        throw new HttpError(
          400,
          "BadRequest",
          "exec needs a WebSocket upgrade (v5.channel.k8s.io or v4.channel.k8s.io); SPDY is not supported",
        );
      if (req.method !== "GET") throw new HttpError(405, "MethodNotAllowed", `${req.method} is not allowed`);
      let opts: ReturnType<typeof parseLogQuery>;
      try {
        opts = parseLogQuery(url.searchParams);
      } catch (err) {
        throw new HttpError(400, "BadRequest", (err as Error).message);
      }
      await this.serveLogs(target, opts, req, res);
    } catch (err) {
      const e = err instanceof HttpError ? err : new HttpError(500, "InternalError", (err as Error).message);
      if (res.headersSent) {
        res.end();
        return;
      }
      const body = JSON.stringify(e.status());
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
      throw new HttpError(
        opts.previous ? 400 : 404,
        opts.previous ? "BadRequest" : "NotFound",
        opts.previous
          ? `previous terminated container "${t.container}" in pod "${t.pod}" not found`
          : `container "${t.container}" in pod "${t.pod}" is not known to this node's runtime`,
      );
    }
    const status = await this.opts.cri.containerStatus(run.id);
    const path = status.logPath;
    if (!path) throw new HttpError(404, "NotFound", `container "${t.container}" has no log file`);
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
    const reject = (e: HttpError): void => {
      const body = JSON.stringify(e.status());
      socket.end(
        `HTTP/1.1 ${e.code} ${e.reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    };
    try {
      this.authorize(req);
      const url = new URL(req.url ?? "/", "https://agent");
      const target = parseTarget(url.pathname);
      if (!target || target.kind !== "exec")
        throw new HttpError(404, "NotFound", `no WebSocket endpoint at ${url.pathname}`);
      if ((req.headers.upgrade ?? "").toLowerCase() !== "websocket")
        throw new HttpError(
          400,
          "BadRequest",
          `upgrade to "${req.headers.upgrade}" is not supported: exec speaks WebSocket (v5.channel.k8s.io, v4.channel.k8s.io), not SPDY`,
        );
      const offered = (req.headers["sec-websocket-protocol"] ?? "").split(",").map((s) => s.trim());
      if (!chooseSubprotocol(offered))
        throw new HttpError(
          400,
          "BadRequest",
          `none of the offered subprotocols (${offered.join(", ")}) is supported: use v5.channel.k8s.io or v4.channel.k8s.io`,
        );
      let exec: ExecRequest;
      try {
        exec = parseExecQuery(url.searchParams);
      } catch (err) {
        throw new HttpError(400, "BadRequest", (err as Error).message);
      }
      const run = (await this.attempts(target))[0];
      if (!run || run.state !== "CONTAINER_RUNNING")
        throw new HttpError(
          400,
          "BadRequest",
          `container "${target.container}" in pod "${target.pod}" is not running`,
        );
      this.wss.handleUpgrade(req, socket, head, (ws) => this.runExec(ws, run.id, exec));
    } catch (err) {
      reject(err instanceof HttpError ? err : new HttpError(500, "InternalError", (err as Error).message));
    }
  }

  /**
   * Runs the command in the container with `ctr task exec` (containerd's own exec: stdin, stdout,
   * stderr and the exit status, no streaming server needed). TTY is not allocated: a tty request
   * runs as a plain pipe session.
   */
  private runExec(ws: WebSocket, containerId: string, exec: ExecRequest): void {
    const v5 = ws.protocol === "v5.channel.k8s.io";
    const execId = `lab-exec-${randomBytes(6).toString("hex")}`;
    const child = spawn(
      this.opts.ctr ?? "ctr",
      [
        "--address",
        this.opts.containerdAddress,
        "-n",
        "k8s.io",
        "task",
        "exec",
        "--exec-id",
        execId,
        containerId,
        ...exec.command,
      ],
      { stdio: [exec.stdin ? "pipe" : "ignore", "pipe", "pipe"] },
    );
    const end = (): void => {
      child.kill("SIGKILL");
      ws.terminate();
    };
    this.sessions.add(end);
    // kubectl's v4 error-channel status is how it learns the exit code; stdout/stderr first.
    const send = (ch: number, d: Buffer | string): void => {
      if (ws.readyState === ws.OPEN) ws.send(frame(ch, d));
    };
    child.stdout!.on("data", (d: Buffer) => exec.stdout && send(STDOUT, d));
    // ctr's own failures (e.g. executable not found) also arrive here, which is what the user needs to see
    child.stderr!.on("data", (d: Buffer) => send(exec.tty ? STDOUT : STDERR, d));
    child.stdin?.on("error", () => undefined);
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      const buf = isBinary ? data : Buffer.from(data);
      if (buf.length === 0) return;
      if (buf[0] === STDIN) child.stdin?.write(buf.subarray(1));
      else if (v5 && buf[0] === CLOSE && buf[1] === STDIN) child.stdin?.end();
      // RESIZE (4) is ignored: no tty is allocated
    });
    ws.on("close", () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    });
    let outputsDone = 0;
    let exitCode: number | null | undefined;
    const finish = (): void => {
      if (outputsDone < 2 || exitCode === undefined) return;
      this.sessions.delete(end);
      const status =
        exitCode === null ? failureStatus("the command was killed") : exitStatus(exec.command, exitCode);
      send(ERROR, JSON.stringify(status));
      ws.close(1000);
    };
    child.stdout!.on("close", () => {
      outputsDone++;
      finish();
    });
    child.stderr!.on("close", () => {
      outputsDone++;
      finish();
    });
    child.on("error", (err) => {
      send(ERROR, JSON.stringify(failureStatus(`cannot run ctr: ${err.message}`)));
      ws.close(1000);
    });
    child.on("exit", (code) => {
      exitCode = code;
      finish();
    });
    this.opts.log?.(`exec (${ws.protocol}) in ${containerId}: ${exec.command.join(" ")}`);
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
