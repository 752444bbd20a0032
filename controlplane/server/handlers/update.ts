import { assertStorable, bodyText, objectBody } from "../body.ts";
import type { RequestContext } from "../context.ts";
import { updateFields } from "../field-manager.ts";
import { validateFields } from "../field-validation.ts";
import { guaranteedUpdate } from "../guaranteed-update.ts";
import { writeScale } from "../subresources/index.ts";

export async function update(ctx: RequestContext): Promise<void> {
  const { route: r, registry, reply } = ctx;
  const { info } = r;
  const scale = r.subresource === "scale";
  const body = await objectBody(ctx.req, info, scale ? "Scale" : info.kind, scale);
  if (r.subresource === "finalize") return reply.json(200, await registry.get(info, undefined, r.name!));
  assertStorable(body);
  if (!scale) validateFields(ctx, body, bodyText(body));
  // An update without a resourceVersion is unconditional: a write that lands between our read and
  // our compare-and-swap is retried on the newer object, not returned to the client as a conflict.
  const unconditional = !body.metadata?.resourceVersion;
  const fields = updateFields(ctx);
  const result = await guaranteedUpdate(
    async () => {
      const current = await registry.get(info, r.namespace, r.name!);
      await ctx.admit(current);
      return current;
    },
    (current) =>
      scale
        ? writeScale(registry, info, current, body, ctx.dryRun, fields)
        : registry.update(
            info,
            current,
            body,
            r.subresource === "status" ? "status" : "main",
            ctx.dryRun,
            fields,
          ),
    { retry: unconditional },
  );
  reply.json(200, result);
}
