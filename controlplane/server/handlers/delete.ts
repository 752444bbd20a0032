import type { IncomingMessage } from "node:http";
import { groupVersion } from "../../../api/resources.ts";
import { ApiError, badRequest } from "../../../api/status.ts";
import type { DeleteOptions, KObject } from "../../registry.ts";
import { isObject, parseBody, readBody, show } from "../body.ts";
import type { RequestContext } from "../context.ts";
import { intParam, selectors } from "../query.ts";

/** DeleteOptions from the body and the query (the query wins), typed strictly. */
async function deleteOptions(
  req: IncomingMessage,
  q: URLSearchParams,
  dryRun: boolean,
): Promise<DeleteOptions> {
  const body = parseBody(await readBody(req), req.headers["content-type"] ?? "");
  const opts: DeleteOptions = { dryRun };
  if (isObject(body)) {
    const g = body.gracePeriodSeconds;
    if (g !== undefined && g !== null) {
      if (typeof g !== "number" || !Number.isSafeInteger(g))
        throw badRequest(
          `json: cannot unmarshal ${show(g)} into Go struct field DeleteOptions.gracePeriodSeconds of type int64`,
        );
      opts.gracePeriodSeconds = g;
    }
    if (typeof body.propagationPolicy === "string") opts.propagationPolicy = body.propagationPolicy;
    if (isObject(body.preconditions))
      opts.preconditions = body.preconditions as DeleteOptions["preconditions"];
    if (body.orphanDependents === true) opts.propagationPolicy ??= "Orphan";
    // kubectl sends dryRun in the body's DeleteOptions, not in the query.
    if (Array.isArray(body.dryRun) && body.dryRun.includes("All")) opts.dryRun = true;
  }
  const g = intParam(q, "gracePeriodSeconds");
  if (g !== undefined) opts.gracePeriodSeconds = g;
  const p = q.get("propagationPolicy");
  if (p) opts.propagationPolicy = p;
  if (opts.propagationPolicy && !["Foreground", "Background", "Orphan"].includes(opts.propagationPolicy)) {
    throw badRequest(
      `unknown propagationPolicy "${opts.propagationPolicy}" (Foreground, Background or Orphan)`,
    );
  }
  return opts;
}

export async function deleteOne(ctx: RequestContext): Promise<void> {
  const { route: r, registry } = ctx;
  const opts = await deleteOptions(ctx.req, ctx.q, ctx.dryRun);
  if (ctx.node !== undefined) await ctx.admit(await registry.get(r.info, r.namespace, r.name!));
  ctx.reply.json(200, await registry.delete(r.info, r.namespace, r.name!, opts));
}

export async function deleteCollection(ctx: RequestContext): Promise<void> {
  const { route: r, registry } = ctx;
  const opts = await deleteOptions(ctx.req, ctx.q, ctx.dryRun);
  const out = await registry.list(r.info, r.namespace, selectors(ctx.q));
  const deleted: KObject[] = [];
  for (const item of out.items) {
    try {
      deleted.push(await registry.delete(r.info, item.metadata.namespace, item.metadata.name!, opts));
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 404)) throw err;
    }
  }
  ctx.reply.json(200, {
    kind: `${r.info.kind}List`,
    apiVersion: groupVersion(r.info),
    metadata: {},
    items: deleted,
  });
}
