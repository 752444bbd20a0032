import { apiEndpoint, type LabEndpoint } from "../kubeconfig.ts";
import { ensurePki } from "../pki.ts";
import type { StepContext, StepOutcome } from "./context.ts";

/** Creates the lab CA, the etcd CA and every certificate the plan needs (reuses what exists). */
export async function pkiStep(ctx: StepContext): Promise<StepOutcome> {
  const r = await ensurePki(ctx.state, ctx.plan);
  // `lab kubeconfig` reads the endpoint from here, so it works without the topology file.
  await ctx.state.writeJson("endpoint.json", {
    server: apiEndpoint(ctx.plan),
    lab: ctx.plan.lab,
  } satisfies LabEndpoint);
  return r.issued.length
    ? { changed: true, message: `issued ${r.issued.length}: ${r.issued.join(", ")}` }
    : { changed: false, message: `all ${r.reused.length} certificates reused` };
}
