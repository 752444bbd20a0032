import { jsonPatch, mergePatch, strategicMerge } from "../../../api/patch.ts";
import { ApiError, badRequest } from "../../../api/status.ts";
import type { KObject } from "../../registry.ts";
import { assertStorable, isObject, MAX_BODY_BYTES, parseBody, readBody } from "../body.ts";
import type { RequestContext } from "../context.ts";
import { updateFields } from "../field-manager.ts";
import { validateFields } from "../field-validation.ts";
import { guaranteedUpdate } from "../guaranteed-update.ts";
import { applyPatch } from "./apply.ts";
import { toScale, writeScale } from "../subresources/index.ts";

const PATCH_TYPES = [
  "application/merge-patch+json",
  "application/json-patch+json",
  "application/strategic-merge-patch+json",
];

export async function patch(ctx: RequestContext): Promise<void> {
  const { route: r, registry, reply } = ctx;
  const { info } = r;
  const type = (ctx.req.headers["content-type"] ?? "").split(";")[0]!.trim();
  if (type === "application/apply-patch+yaml") return applyPatch(ctx);
  const text = await readBody(ctx.req);
  const raw = parseBody(text, "application/json");
  if (!PATCH_TYPES.includes(type)) {
    throw new ApiError(
      415,
      "UnsupportedMediaType",
      `unsupported patch type "${type}" (merge-patch+json, json-patch+json, strategic-merge-patch+json, apply-patch+yaml)`,
    );
  }
  // The result is bounded like a body: a few `copy` operations would otherwise double it at will.
  const apply = (target: unknown): KObject => {
    const patched =
      type === "application/json-patch+json"
        ? jsonPatch(target, raw, MAX_BODY_BYTES)
        : type === "application/merge-patch+json"
          ? mergePatch(target, raw)
          : strategicMerge(target, raw);
    if (!isObject(patched)) throw badRequest("the patched object is not an object");
    assertStorable(patched, "patched object");
    return patched as KObject;
  };
  const fields = updateFields(ctx);
  const scale = r.subresource === "scale";
  if (!scale && type !== "application/json-patch+json") validateFields(ctx, raw, text.toString("utf8"));
  const preconditionRv = isObject(raw) && isObject(raw.metadata) ? raw.metadata.resourceVersion : undefined;
  const result = await guaranteedUpdate(
    (fresh) => registry.getForUpdate(info, r.namespace, r.name!, fresh || ctx.dryRun),
    async (current) => {
      await ctx.admit(current);
      if (r.subresource === "scale")
        return writeScale(registry, info, current, apply(toScale(info, current)), ctx.dryRun, fields);
      const next = apply(current);
      if (!isObject(next.metadata)) throw badRequest("the patch removed metadata");
      if (type === "application/json-patch+json") validateFields(ctx, next);
      if (!r.subresource) await ctx.admitNew(next);
      if (preconditionRv === undefined) next.metadata.resourceVersion = current.metadata.resourceVersion;
      const mode = r.subresource === "status" ? "status" : "main";
      return registry.update(info, current, next, mode, ctx.dryRun, fields);
    },
    // Patches without a resourceVersion precondition re-apply to the newer object, as Kubernetes does.
    { retry: preconditionRv === undefined, cached: (c) => registry.servedFromCache(c) },
  );
  reply.json(200, result);
}
