import { request } from "node:https";
import type { Duplex } from "node:stream";
import { readFile } from "node:fs/promises";
import type { V1NodeList } from "@kubernetes/client-node";
import { LabError } from "../../topology/errors.ts";
import type { Plan } from "../../topology/plan.ts";
import { dialTls, type LabDialer } from "../dialer.ts";
import { apiEndpoint } from "../kubeconfig.ts";
import type { StepContext, StepOutcome } from "./context.ts";

export interface NodeReadiness {
  ready: string[];
  notReady: { name: string; why: string }[];
}

/** Which planned nodes the API reports Ready, and why the others are not. Pure. */
export function nodesReadiness(plan: Plan, list: V1NodeList | undefined): NodeReadiness {
  const out: NodeReadiness = { ready: [], notReady: [] };
  for (const n of plan.nodes) {
    const obj = list?.items.find((i) => i.metadata?.name === n.name);
    const cond = obj?.status?.conditions?.find((c) => c.type === "Ready");
    if (cond?.status === "True") out.ready.push(n.name);
    else
      out.notReady.push({
        name: n.name,
        why: !obj
          ? "not registered"
          : cond
            ? `Ready=${cond.status}${cond.reason ? ` (${cond.reason})` : ""}`
            : "no Ready condition yet",
      });
  }
  return out;
}

/**
 * GET with the admin client certificate; resolves with the status code and body, never throws on
 * HTTP errors. With a dialer, the connection goes through it (a jump host to the lab network).
 */
export function adminGet(
  ctx: { ca: string; cert: string; key: string },
  url: string,
  timeoutMs = 5_000,
  dialer?: LabDialer,
): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, "");
  const port = Number(u.port || 443);
  // Without an agent, http calls createConnection and waits for its callback (Node ≥ 16).
  const createConnection = dialer
    ? (_o: unknown, done: (err: Error | null, s: Duplex) => void) => {
        dialTls(dialer, host, port, ctx, { timeoutMs }).then(
          (s) => done(null, s),
          (err: Error) => done(err, undefined as unknown as Duplex),
        );
        return undefined;
      }
    : undefined;
  return new Promise((resolve, reject) => {
    const options = { ca: ctx.ca, cert: ctx.cert, key: ctx.key, timeout: timeoutMs };
    const req = request(url, createConnection ? { ...options, createConnection } : options, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }),
      );
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}

export const DEFAULT_WAIT_READY_MS = 300_000;

/** Waits until the API answers through the VIP and every node is Ready. */
export async function waitReadyStep(
  ctx: StepContext,
  timeoutMs = DEFAULT_WAIT_READY_MS,
): Promise<StepOutcome> {
  const tls = {
    ca: await readFile(ctx.state.path("pki", "ca.crt"), "utf8"),
    cert: await readFile(ctx.state.path("pki", "admin.crt"), "utf8"),
    key: await readFile(ctx.state.path("pki", "admin.key"), "utf8"),
  };
  const url = `${apiEndpoint(ctx.plan)}/api/v1/nodes`;
  const started = Date.now();
  let last: NodeReadiness = nodesReadiness(ctx.plan, undefined);
  let apiError = "";
  for (;;) {
    if (ctx.signal?.aborted) throw new LabError({ code: "ABORTED", what: "waiting for nodes was cancelled" });
    try {
      // 30 s, not 5: on the loaded 3-master TCG lab every node was Ready while the API through the
      // VIP took over 10 s per request, and a 5 s limit never saw it.
      const r = await adminGet(tls, url, 30_000, ctx.dialer);
      if (r.status === 200) {
        apiError = "";
        last = nodesReadiness(ctx.plan, JSON.parse(r.body) as V1NodeList);
        ctx.reporter.event({
          step: "wait-ready.nodes",
          state: "progress",
          message: `${last.ready.length}/${ctx.plan.nodes.length} Ready`,
        });
        if (last.notReady.length === 0)
          return { changed: false, checkOnly: true, message: `${last.ready.length} nodes Ready` };
      } else apiError = `API answered ${r.status}`;
    } catch (err) {
      apiError = `API at ${apiEndpoint(ctx.plan)} not answering: ${(err as Error).message}`;
    }
    if (Date.now() - started > timeoutMs) {
      throw new LabError({
        code: "NOT_READY_NODES",
        what:
          apiError ||
          `nodes not Ready after ${Math.round(timeoutMs / 1000)} s: ${last.notReady.map((n) => `${n.name} (${n.why})`).join(", ")}`,
        where: apiError ? "control-plane" : last.notReady.map((n) => n.name).join(", "),
        fix: apiError
          ? "look at `journalctl -u lab-server` and `journalctl -u lab-keepalived` on the masters (`lab ssh master-1`)"
          : `look at \`journalctl -u lab-agent\` on ${last.notReady[0]?.name ?? "the node"}`,
        source: "host",
      });
    }
    await new Promise((r) => setTimeout(r, 2_000));
  }
}
