import type { ServerResponse } from "node:http";
import { PatchError } from "../../api/patch.ts";
import { ApiError } from "../../api/status.ts";
import { StoreError } from "../storage/etcd-store.ts";

/** A Success Status, as DELETE of a collection member or a binding answers. */
export function success(code = 200, details?: Record<string, unknown>): Record<string, unknown> {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Success",
    code,
    ...(details ? { details } : {}),
  };
}

/** Whether an etcd failure looks like a deadline (504) or an unreachable cluster (503). */
function etcdOutage(err: Error): ApiError | undefined {
  const text = `${err.name} ${err.message}`;
  if (/request is too large|message larger than max|RESOURCE_EXHAUSTED/i.test(text)) {
    return new ApiError(
      413,
      "RequestEntityTooLarge",
      "Request entity too large: the object exceeds etcd's request limit",
    );
  }
  if (/DEADLINE_EXCEEDED|GRPCDeadlineExceeded|request timed out|deadline/i.test(text)) {
    return new ApiError(
      504,
      "Timeout",
      "Timeout: etcd did not answer in time (DEADLINE_EXCEEDED); the request may or may not have been applied, retry it",
    );
  }
  if (
    /UNAVAILABLE|GRPCUnavailable|circuit|No connection|ECONNREFUSED|leader changed|no leader|GRPCConnectFailed/i.test(
      text,
    )
  ) {
    return new ApiError(
      503,
      "ServiceUnavailable",
      `etcd is unavailable (${firstLine(err.message)}); retry shortly`,
    );
  }
  return undefined;
}

function firstLine(s: string): string {
  return (s.split("\n")[0] ?? "").slice(0, 300);
}

/**
 * Every failure as the Kubernetes Status a client may see: ApiErrors as they are, patch failures
 * as 422, etcd outages as 503/504, anything else as a 500 carrying the message (never a stack).
 */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof PatchError)
    return err.code === 413
      ? new ApiError(413, "RequestEntityTooLarge", err.message)
      : new ApiError(422, "Invalid", err.message);
  if (err instanceof StoreError) {
    if (err.reason === "Compacted") return new ApiError(410, "Expired", err.message);
    if (err.reason === "NotFound") return new ApiError(404, "NotFound", err.message);
    return new ApiError(409, err.reason, err.message);
  }
  if (err instanceof RangeError && /call stack/i.test(err.message)) {
    return new ApiError(400, "BadRequest", "the request is nested too deeply to be processed");
  }
  if (err instanceof Error) {
    return (
      etcdOutage(err) ??
      new ApiError(500, "InternalError", `Internal error occurred: ${firstLine(err.message)}`)
    );
  }
  return new ApiError(500, "InternalError", `Internal error occurred: ${firstLine(String(err))}`);
}

/**
 * One response, written at most once. Before the headers go out a failure becomes a Status; once a
 * stream (a watch) has started it becomes an ERROR event and the stream ends. Every method is safe to
 * call again, late, or after the client has gone: none of them throws.
 */
export class Reply {
  private streaming = false;
  private ended = false;

  constructor(readonly res: ServerResponse) {
    // A client that vanishes mid-response must not become an uncaught 'error'.
    res.on("error", () => undefined);
    res.once("close", () => (this.ended = true));
  }

  get done(): boolean {
    return this.ended || this.res.writableEnded || this.res.destroyed;
  }

  get headersSent(): boolean {
    return this.res.headersSent;
  }

  json(code: number, body: unknown): void {
    if (this.done || this.res.headersSent) return;
    const data = JSON.stringify(body);
    this.res.writeHead(code, {
      "Content-Type": "application/json",
      "Content-Length": Buffer.byteLength(data),
    });
    this.res.end(data);
    this.ended = true;
  }

  text(code: number, body: string): void {
    if (this.done || this.res.headersSent) return;
    this.res.writeHead(code, { "Content-Type": "text/plain" });
    this.res.end(body);
    this.ended = true;
  }

  /** Starts a chunked JSON stream and flushes the headers, so a watcher sees it established. */
  startStream(): void {
    if (this.done || this.streaming) return;
    this.streaming = true;
    if (!this.res.headersSent) {
      this.res.writeHead(200, { "Content-Type": "application/json", "Transfer-Encoding": "chunked" });
      this.res.flushHeaders();
    }
  }

  /** One line of the stream; started on first use. */
  line(value: unknown): void {
    if (this.done) return;
    this.startStream();
    this.res.write(JSON.stringify(value) + "\n");
  }

  /** One line of the stream, already JSON. */
  rawLine(json: string): void {
    if (this.done) return;
    this.startStream();
    this.res.write(json + "\n");
  }

  end(): void {
    if (this.done) return;
    this.ended = true;
    if (!this.res.headersSent) this.res.writeHead(200, { "Content-Type": "application/json" });
    this.res.end();
  }

  /** The error boundary's answer: a Status, an ERROR event, or (headers out, not a stream) a cut. */
  fail(err: unknown): void {
    try {
      const status = toApiError(err);
      if (this.done) return;
      if (!this.res.headersSent) return this.json(status.code, status.toStatus());
      if (this.streaming) {
        this.line({ type: "ERROR", object: status.toStatus() });
        return this.end();
      }
      // Headers of something else went out (a proxied log): all we can do is end it short.
      this.ended = true;
      this.res.destroy();
    } catch {
      this.ended = true;
      this.res.destroy();
    }
  }
}
