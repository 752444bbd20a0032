/**
 * The plain-HTTP health port, served from a worker thread.
 *
 * keepalived asks /readyz every 2 s and gives the VIP away after three failed answers. Served from
 * the API's own event loop, that answer waited behind whatever the loop was doing: on a loaded TCG
 * master (Node ~14x slower than on the host) a relist storm after a VIP move kept it past the
 * check's bound on the new holder too, and the VIP left every master in turn. The thread answers at
 * once from two shared facts the main thread keeps current: its last heartbeat, and why it is not
 * ready (empty when it is). A main loop stuck for longer than `stallMs` fails /readyz (and /livez
 * after `deadMs`), so a hung server still loses the VIP; a stopped (SIGSTOP) or dead process
 * answers nothing at all, as before.
 */
import { Worker } from "node:worker_threads";

export interface HealthThreadOptions {
  host: string;
  port: number;
  /** /readyz fails when the main loop has not beaten for this long (ms). */
  stallMs?: number;
  /** /livez and /healthz fail when it has not beaten for this long (ms). */
  deadMs?: number;
}

/** The thread's source: plain JavaScript, evaluated, so it runs the same under tsx, vitest and node. */
const SOURCE = String.raw`
const { workerData, parentPort } = require("node:worker_threads");
const http = require("node:http");
const beat = new Float64Array(workerData.shared, 0, 1);
const { host, port, stallMs, deadMs } = workerData;
let why = "starting";
parentPort.on("message", (m) => { if (typeof m === "string") why = m; });
const PATHS = new Set(["/healthz", "/livez", "/readyz"]);
function text(res, code, body) {
  res.writeHead(code, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body) });
  res.end(body);
}
const server = http.createServer((req, res) => {
  req.on("error", () => undefined);
  let path = "";
  try { path = new URL(req.url || "/", "http://x").pathname.replace(/\/+$/, "") || "/"; } catch { path = ""; }
  if (req.method !== "GET" || !PATHS.has(path)) return text(res, 404, "only /healthz, /livez and /readyz are served here");
  const age = Date.now() - beat[0];
  if (age > deadMs) return text(res, 503, "lab-server's main loop has not run for " + Math.round(age / 1000) + " s");
  if (path !== "/readyz") return text(res, 200, "ok");
  if (age > stallMs) return text(res, 503, "lab-server's main loop has not run for " + Math.round(age / 1000) + " s");
  if (why) return text(res, 503, why);
  text(res, 200, "ok");
});
server.on("connection", (s) => s.on("error", () => undefined));
server.on("error", (err) => parentPort.postMessage({ error: String(err && err.message || err) }));
server.listen(port, host, () => parentPort.postMessage({ port: server.address().port }));
`;

/** Beat interval of the main thread; the stall bounds are several beats. */
const BEAT_MS = 250;

export class HealthThread {
  private worker: Worker | undefined;
  private beatTimer: NodeJS.Timeout | undefined;
  private lastWhy: string | undefined = "starting";

  /**
   * Starts the thread and the heartbeat; resolves with the bound port. `notReady` is asked on every
   * beat; its answer reaches the thread only when it changes.
   */
  async start(opts: HealthThreadOptions, notReady: () => string | undefined): Promise<number> {
    const shared = new SharedArrayBuffer(8);
    const beat = new Float64Array(shared);
    beat[0] = Date.now();
    const worker = new Worker(SOURCE, {
      eval: true,
      workerData: {
        shared,
        host: opts.host,
        port: opts.port,
        stallMs: opts.stallMs ?? 5_000,
        deadMs: opts.deadMs ?? 30_000,
      },
      // A few MiB: it holds one small HTTP server.
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 },
    });
    this.worker = worker;
    worker.unref();
    const tick = (): void => {
      beat[0] = Date.now();
      const why = notReady() ?? "";
      if (why !== this.lastWhy) {
        this.lastWhy = why;
        worker.postMessage(why);
      }
    };
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error("the health thread did not listen within 30 s")),
        30_000,
      );
      worker.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      worker.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`the health thread exited (${code}) before it listened`));
      });
      worker.on("message", (m: { port?: number; error?: string }) => {
        if (m.error) {
          clearTimeout(timer);
          reject(new Error(`health port ${opts.host}:${opts.port}: ${m.error}`));
        } else if (m.port !== undefined) {
          clearTimeout(timer);
          resolve(m.port);
        }
      });
    }).catch(async (err: unknown) => {
      await worker.terminate();
      throw err;
    });
    // A thread that dies later is logged, never the process's end; the API keeps serving.
    worker.on("error", (err) => console.error(`health thread failed: ${err.message}`));
    tick();
    this.beatTimer = setInterval(tick, BEAT_MS);
    this.beatTimer.unref();
    return port;
  }

  async stop(): Promise<void> {
    clearInterval(this.beatTimer);
    const w = this.worker;
    this.worker = undefined;
    if (w) await w.terminate();
  }
}
