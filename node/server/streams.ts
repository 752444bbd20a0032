/**
 * Relays between a client's stream (spliced through lab-server) and the container runtime's own
 * streaming server, whose one-use URL CRI Exec/Attach/PortForward returns. containerd 1.6 serves
 * SPDY/3.1 and WebSocket `v4.channel.k8s.io` there; kubectl 1.32 speaks WebSocket v5 (exec,
 * attach) and SPDY tunnelled in WebSocket (`SPDY/3.1+portforward.k8s.io`, KEP-4006), falling back
 * to plain SPDY. Three relays cover every combination without parsing SPDY:
 *   - SPDY from the client: the upgrade is replayed to the runtime and the bytes spliced;
 *   - WebSocket channel protocol (v5/v4): one message per frame both ways, v5's CLOSE dropped;
 *   - SPDY in WebSocket: each binary message is a piece of the SPDY byte stream, both ways.
 */
import { request, type IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocket } from "ws";
import { CLOSE } from "./exec-protocol.ts";

/** The prefix kubectl puts on SPDY subprotocols it tunnels in WebSocket (KEP-4006). */
export const SPDY_TUNNEL_PREFIX = "SPDY/3.1+";
/** What the runtime's streaming server speaks over WebSocket. */
export const RUNTIME_WS_PROTOCOL = "v4.channel.k8s.io";
/** How long the runtime's streaming server gets to answer an upgrade. */
const HANDSHAKE_MS = 15_000;

/** The runtime refused or did not answer: the status and body the client should see. */
export class UpstreamRefused extends Error {
  constructor(
    readonly code: number,
    readonly body: string,
    readonly contentType = "text/plain",
  ) {
    super(`the runtime's streaming server answered ${code}: ${body.trim()}`);
  }
}

/** Header values as the client sent them, one entry per header line (repeats kept apart). */
export function rawHeaderValues(req: IncomingMessage, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2)
    if (req.rawHeaders[i]!.toLowerCase() === name) out.push(req.rawHeaders[i + 1]!);
  return out;
}

/** The SPDY protocols a tunnelling client offers (`SPDY/3.1+portforward.k8s.io` → `portforward.k8s.io`). */
export function tunnelledProtocols(offered: Iterable<string>): string[] {
  return [...offered]
    .filter((p) => p.startsWith(SPDY_TUNNEL_PREFIX) && p.endsWith(".k8s.io"))
    .map((p) => p.slice(SPDY_TUNNEL_PREFIX.length));
}

/**
 * Sends a SPDY/3.1 upgrade to the runtime's URL offering `protocols`; resolves to the upgraded
 * socket, the bytes that came with the 101 and the protocol the runtime chose.
 */
export function spdyUpgrade(
  url: string,
  method: string,
  protocols: string[],
): Promise<{ socket: Duplex; head: Buffer; protocol: string; rawHeaders: string[] }> {
  return new Promise((resolve, reject) => {
    const up = request(url, {
      method,
      headers: { Connection: "Upgrade", Upgrade: "SPDY/3.1", "X-Stream-Protocol-Version": protocols },
      timeout: HANDSHAKE_MS,
    });
    up.on("upgrade", (res, socket, head) => {
      socket.setTimeout(0);
      // until a relay takes it over (or if the client never completes its side)
      socket.on("error", () => socket.destroy());
      const protocol = res.headers["x-stream-protocol-version"];
      resolve({
        socket,
        head,
        protocol: typeof protocol === "string" ? protocol : "",
        rawHeaders: res.rawHeaders,
      });
    });
    up.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (d: Buffer) => chunks.push(d));
      res.on("end", () =>
        reject(
          new UpstreamRefused(
            res.statusCode ?? 502,
            Buffer.concat(chunks).toString(),
            res.headers["content-type"] ?? "text/plain",
          ),
        ),
      );
    });
    up.on("timeout", () => up.destroy(new Error(`no answer within ${HANDSHAKE_MS / 1000} s`)));
    up.on("error", (err) =>
      reject(new UpstreamRefused(502, `cannot reach the runtime's streaming server: ${err.message}`)),
    );
    up.end();
  });
}

/** Splices two byte streams; either side ending or failing ends both. */
export function splice(a: Duplex, b: Duplex): void {
  a.pipe(b);
  b.pipe(a);
  const end = (): void => {
    a.destroy();
    b.destroy();
  };
  a.on("error", end);
  b.on("error", end);
  a.on("close", end);
  b.on("close", end);
}

/**
 * A plain SPDY client (kubectl's fallback, or an older kubectl): replays its upgrade to the
 * runtime, passes the runtime's 101 back and splices the two connections.
 */
export async function relaySpdy(
  url: string,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<void> {
  const offered = rawHeaderValues(req, "x-stream-protocol-version").flatMap((v) =>
    v.split(",").map((s) => s.trim()),
  );
  const up = await spdyUpgrade(url, req.method ?? "POST", offered);
  const lines = ["HTTP/1.1 101 Switching Protocols"];
  for (let i = 0; i < up.rawHeaders.length; i += 2)
    lines.push(`${up.rawHeaders[i]}: ${up.rawHeaders[i + 1]}`);
  socket.write(`${lines.join("\r\n")}\r\n\r\n`);
  if (up.head.length) socket.write(up.head);
  if (head.length) up.socket.write(head);
  splice(socket, up.socket);
}

/** Opens the runtime's WebSocket (v4 channel protocol), paused until the client side is ready. */
export function openRuntimeWebSocket(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(/^http/, "ws"), [RUNTIME_WS_PROTOCOL], {
      handshakeTimeout: HANDSHAKE_MS,
    });
    ws.on("error", () => ws.terminate()); // a failure after open ends the session; never unhandled
    ws.once("open", () => {
      ws.pause();
      resolve(ws);
    });
    ws.once("unexpected-response", (_req, res) => {
      const chunks: Buffer[] = [];
      res.on("data", (d: Buffer) => chunks.push(d));
      res.on("end", () =>
        reject(new UpstreamRefused(res.statusCode ?? 502, Buffer.concat(chunks).toString())),
      );
      ws.terminate();
    });
    ws.once("error", (err) =>
      reject(new UpstreamRefused(502, `cannot reach the runtime's streaming server: ${err.message}`)),
    );
  });
}

/**
 * Channel frames between a client (v5 or v4) and the runtime (v4): the framing is the same, but
 * v4 has no CLOSE frame, so a v5 client's CLOSE is not passed on.
 */
export function relayChannels(client: WebSocket, runtime: WebSocket): void {
  client.on("message", (data: Buffer, isBinary: boolean) => {
    const buf = isBinary ? data : Buffer.from(data);
    if (buf.length === 0 || buf[0] === CLOSE) return;
    if (runtime.readyState === runtime.OPEN) runtime.send(buf);
  });
  runtime.on("message", (data: Buffer) => {
    if (client.readyState === client.OPEN) client.send(data);
  });
  linkClose(client, runtime);
  runtime.resume();
}

/** SPDY bytes inside WebSocket binary messages (the client) and on a raw socket (the runtime). */
export function relayTunnel(client: WebSocket, runtime: Duplex, head: Buffer): void {
  if (head.length) client.send(head);
  runtime.on("data", (d: Buffer) => {
    if (client.readyState === client.OPEN) client.send(d);
  });
  client.on("message", (data: Buffer) => {
    runtime.write(Buffer.isBuffer(data) ? data : Buffer.from(data));
  });
  const end = (): void => {
    runtime.destroy();
    if (client.readyState === client.OPEN) client.close(1000);
  };
  runtime.on("close", end);
  runtime.on("error", end);
  client.on("close", () => runtime.destroy());
  client.on("error", () => runtime.destroy());
}

function linkClose(client: WebSocket, runtime: WebSocket): void {
  // The runtime closes (often without a close frame) once the command has exited: the status frame
  // it sent before is already queued ahead of our close.
  runtime.on("close", () => {
    if (client.readyState === client.OPEN) client.close(1000);
  });
  runtime.on("error", () => client.terminate());
  client.on("close", () => runtime.terminate());
  client.on("error", () => runtime.terminate());
}
