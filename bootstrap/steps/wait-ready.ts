import { readFile } from "node:fs/promises";
import type { V1NodeList } from "@kubernetes/client-node";
import { LabError } from "../../topology/errors.ts";
import type { Plan } from "../../topology/plan.ts";
import { labRequest, type LabDialer } from "../../ssh/dialer.ts";
import { waitUntilReady } from "../../topology/readiness.ts";
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
 * `timeoutMs` bounds the whole request (dial, TLS, answer and body), `signal` cancels it.
 */
export function adminGet(
  ctx: { ca: string; cert: string; key: string },
  url: string,
  timeoutMs = 5_000,
  dialer?: LabDialer,
  signal?: AbortSignal,
): Promise<{ status: number; body: string }> {
  return labRequest(url, ctx, { timeoutMs, ...(signal ? { signal } : {}) }, dialer);
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
  const endpoint = apiEndpoint(ctx.plan);
  const url = `${endpoint}/api/v1/nodes`;
  let last: NodeReadiness = nodesReadiness(ctx.plan, undefined);
  let apiError = "";
  await waitUntilReady(
    {
      name: `wait-ready (the API at ${endpoint} and ${ctx.plan.nodes.length} nodes Ready)`,
      async probe(signal) {
        try {
          // 30 s per attempt, not 5: on the loaded 3-master TCG lab every node was Ready while the
          // API through the VIP took over 10 s per request, and a 5 s limit never saw it. The
          // attempt's signal (min(30 s, time left)) ends a request the peer never answers.
          const r = await adminGet(tls, url, WAIT_READY_ATTEMPT_MS, ctx.dialer, signal);
          if (r.status !== 200) {
            apiError = `API answered ${r.status}`;
            return { ready: false, detail: apiError };
          }
          apiError = "";
          last = nodesReadiness(ctx.plan, JSON.parse(r.body) as V1NodeList);
        } catch (err) {
          apiError = `API at ${endpoint} not answering: ${(err as Error).message}`;
          return { ready: false, detail: apiError };
        }
        ctx.reporter.event({
          step: "wait-ready.nodes",
          state: "progress",
          message: `${last.ready.length}/${ctx.plan.nodes.length} Ready`,
        });
        return {
          ready: last.notReady.length === 0,
          detail: `${last.ready.length}/${ctx.plan.nodes.length} Ready`,
        };
      },
    },
    {
      timeoutMs,
      intervalMs: 2_000,
      attemptTimeoutMs: WAIT_READY_ATTEMPT_MS,
      ...(ctx.signal ? { signal: ctx.signal } : {}),
      giveUp: ({ last: verdict, elapsedMs }) =>
        new LabError({
          code: "NOT_READY_NODES",
          what: apiError
            ? `wait-ready: ${apiError} (after ${Math.round(elapsedMs / 1000)} s)`
            : `wait-ready: nodes not Ready after ${Math.round(elapsedMs / 1000)} s: ${last.notReady.map((n) => `${n.name} (${n.why})`).join(", ") || verdict}`,
          where: apiError ? "control-plane" : last.notReady.map((n) => n.name).join(", "),
          fix: apiError
            ? "look at `journalctl -u lab-server` and `journalctl -u lab-keepalived` on the masters (`lab ssh master-1`)"
            : `look at \`journalctl -u lab-agent\` on ${last.notReady[0]?.name ?? "the node"}`,
          source: "host",
        }),
    },
  );
  return { changed: false, checkOnly: true, message: `${last.ready.length} nodes Ready` };
}

/** One attempt of wait-ready: a request through the VIP that got no answer in this time is retried. */
export const WAIT_READY_ATTEMPT_MS = 30_000;
