import { toTable } from "../../../api/table.ts";
import { wantsTable, type RequestContext } from "../context.ts";
import { resourceVersionParam } from "../query.ts";
import { toScale } from "../subresources/index.ts";

export async function get(ctx: RequestContext): Promise<void> {
  const { route: r, q, reply } = ctx;
  resourceVersionParam(q);
  const obj = await ctx.registry.get(r.info, r.namespace, r.name!);
  if (r.subresource === "scale") return reply.json(200, toScale(r.info, obj));
  if (wantsTable(ctx.req)) {
    return reply.json(
      200,
      toTable(r.info.kind, [obj], {
        resourceVersion: obj.metadata.resourceVersion,
        includeObject: q.get("includeObject") ?? undefined,
      }),
    );
  }
  reply.json(200, obj);
}
