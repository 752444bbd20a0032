import { readFile } from "node:fs/promises";
import { request, type Agent } from "node:https";
import type { TestApiServer } from "./test-apiserver.ts";

export interface RawResponse {
  code: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** The body as JSON, or undefined when it is not. */
  json: Record<string, unknown> | undefined;
}

export interface Identity {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** Loads the PEM files of a client certificate made by the test PKI. */
export async function identity(s: TestApiServer, files: { cert: string; key: string }): Promise<Identity> {
  const [ca, cert, key] = await Promise.all([
    readFile(s.pki.caCert),
    readFile(files.cert),
    readFile(files.key),
  ]);
  return { ca, cert, key };
}

/**
 * One HTTPS request on a fresh connection, exactly as given (no client-side checks between the test
 * and lab-server); it fails after `timeoutMs` naming the request.
 */
export function rawRequest(
  port: number,
  who: Identity,
  method: string,
  path: string,
  opts: { body?: string | Buffer; headers?: Record<string, string>; timeoutMs?: number; agent?: Agent } = {},
): Promise<RawResponse> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path,
        method,
        ca: who.ca,
        cert: who.cert,
        key: who.key,
        agent: opts.agent ?? false,
        headers: {
          Accept: "application/json",
          // Explicit: Node sends a DELETE's body with neither Content-Length nor chunking otherwise.
          ...(opts.body !== undefined
            ? { "Content-Type": "application/json", "Content-Length": String(Buffer.byteLength(opts.body)) }
            : {}),
          ...opts.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (d: Buffer) => chunks.push(d));
        res.on("error", reject);
        res.on("end", () => {
          const body = Buffer.concat(chunks).toString("utf8");
          let json: Record<string, unknown> | undefined;
          try {
            json = JSON.parse(body) as Record<string, unknown>;
          } catch {
            json = undefined;
          }
          resolve({ code: res.statusCode ?? 0, headers: res.headers, body, json });
        });
      },
    );
    req.setTimeout(timeoutMs, () =>
      req.destroy(new Error(`${method} ${path} got no answer in ${timeoutMs} ms`)),
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}
