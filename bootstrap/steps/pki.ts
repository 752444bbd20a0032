import { apiEndpoint, type LabEndpoint } from "../kubeconfig.ts";
import { ensurePki, type PkiResult } from "../pki.ts";
import type { StepContext, StepOutcome } from "./context.ts";

/** Certificates being issued ahead of the step (while the machines boot), per lab state. */
const early = new Map<string, Promise<PkiResult>>();

/**
 * Starts issuing the lab's certificates before the bootstrap (`lab up` calls it while the machines
 * boot; key generation is the slowest local work of a first run). The pki step takes the result.
 */
export function startEarlyPki(ctx: Pick<StepContext, "state" | "plan">): void {
  if (early.has(ctx.state.dir)) return;
  const p = ensurePki(ctx.state, ctx.plan);
  p.catch(() => undefined); // the step runs ensurePki again and reports the failure
  early.set(ctx.state.dir, p);
}

/** Creates the lab CA, the etcd CA and every certificate the plan needs (reuses what exists). */
export async function pkiStep(ctx: StepContext): Promise<StepOutcome> {
  const ahead = early.get(ctx.state.dir);
  early.delete(ctx.state.dir);
  const before = ahead ? await ahead.catch(() => undefined) : undefined;
  // Again in any case: cheap when everything exists, and right when the state changed meanwhile.
  const now = await ensurePki(ctx.state, ctx.plan);
  const r = before ? { issued: [...new Set([...before.issued, ...now.issued])], reused: now.reused } : now;
  // `lab kubeconfig` reads the endpoint from here, so it works without the topology file.
  await ctx.state.writeJson("endpoint.json", {
    server: apiEndpoint(ctx.plan),
    lab: ctx.plan.lab,
  } satisfies LabEndpoint);
  return r.issued.length
    ? { changed: true, message: `issued ${r.issued.length}: ${r.issued.join(", ")}` }
    : { changed: false, message: `all ${r.reused.length} certificates reused` };
}
