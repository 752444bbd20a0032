import type { ResourceInfo } from "../../../api/resources.ts";
import type { FieldsWrite } from "../../registry/apply/index.ts";
import type { KObject, Registry } from "../../registry.ts";
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
  if (!r.subresource) await ctx.admitNew(body);
  reply.json(
    200,
    await updateObject(
      registry,
      info,
      r.namespace,
      r.name!,
      body,
      r.subresource,
      ctx.admit,
      ctx.dryRun,
      updateFields(ctx),
    ),
  );
}

/** A PUT of a checked body (HTTP or in-process, controlplane/local-client.ts), after authorization. */
export function updateObject(
  registry: Registry,
  info: ResourceInfo,
  namespace: string | undefined,
  name: string,
  body: KObject,
  subresource: string | undefined,
  admit: (obj: KObject) => Promise<void>,
  dryRun: boolean,
  fields?: FieldsWrite,
): Promise<unknown> {
  // An update without a resourceVersion is unconditional: a write that lands between our read and
  // our compare-and-swap is retried on the newer object, not returned to the client as a conflict.
  const unconditional = !body.metadata?.resourceVersion;
  return guaranteedUpdate(
    (fresh) => registry.getForUpdate(info, namespace, name, fresh || dryRun),
    async (current) => {
      await admit(current);
      return subresource === "scale"
        ? writeScale(registry, info, current, body, dryRun, fields)
        : registry.update(info, current, body, subresource === "status" ? "status" : "main", dryRun, fields);
    },
    { retry: unconditional, cached: (c) => registry.servedFromCache(c) },
  );
}
