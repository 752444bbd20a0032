import { ApiError, badRequest } from "../../../api/status.ts";
import { objectBody } from "../body.ts";
import type { RequestContext } from "../context.ts";
import { success } from "../reply.ts";
import { bind, evict } from "../subresources/index.ts";

export async function create(ctx: RequestContext): Promise<void> {
  const { route: r, registry, reply } = ctx;
  const { info } = r;
  if (r.subresource === "eviction") {
    if (info.kind !== "Pod") throw new ApiError(404, "NotFound", "eviction is a pods subresource");
    const eviction = await objectBody(ctx.req, info, "Eviction", true);
    return reply.json(201, await evict(registry, r.namespace!, r.name!, eviction, ctx.dryRun));
  }
  const binding = r.subresource === "binding";
  const body = await objectBody(ctx.req, info, binding ? "Binding" : info.kind, binding);
  if (binding) {
    if (info.kind !== "Pod") throw new ApiError(404, "NotFound", "binding is a pods subresource");
    await bind(registry, r.namespace!, r.name!, body);
    return reply.json(201, success(201));
  }
  if (r.name || r.subresource)
    throw new ApiError(405, "MethodNotAllowed", "POST goes to the collection, not to a named object");
  if (info.namespaced) {
    const bodyNs = body.metadata.namespace;
    if (bodyNs && bodyNs !== r.namespace) {
      throw badRequest(
        "the namespace of the provided object does not match the namespace sent on the request",
      );
    }
  }
  await ctx.admit(body);
  reply.json(201, await registry.create(info, r.namespace, body, ctx.dryRun));
}
