import { groupVersion } from "../../../api/resources.ts";
import { ApiError, badRequest, notFound } from "../../../api/status.ts";
import { applyConfig, type ManagedFieldsEntry } from "../../registry/apply/index.ts";
import type { KObject } from "../../registry.ts";
import { assertStorable, isObject, parseBody, readBody, show } from "../body.ts";
import type { RequestContext } from "../context.ts";
import { fieldManager } from "../field-manager.ts";
import { validateFields } from "../field-validation.ts";

const ATTEMPTS = 6;

function isRetryable(err: unknown, reason: string): boolean {
  return err instanceof ApiError && err.reason === reason && err.constructor === ApiError;
}

/** The applied configuration, checked against the URL it was sent to. */
async function configuration(ctx: RequestContext): Promise<KObject> {
  const { info, name, namespace } = ctx.route;
  const text = await readBody(ctx.req);
  const body = parseBody(text, "application/apply-patch+yaml");
  if (!isObject(body)) throw badRequest("the applied configuration must be a YAML or JSON object");
  if (body.apiVersion !== groupVersion(info) || body.kind !== info.kind) {
    throw badRequest(
      `the applied configuration's apiVersion ${show(body.apiVersion)} and kind ${show(body.kind)} do not match the resource (expected apiVersion "${groupVersion(info)}", kind "${info.kind}")`,
    );
  }
  if (body.metadata === undefined) body.metadata = {};
  if (!isObject(body.metadata)) throw badRequest("metadata must be an object");
  const meta = body.metadata;
  if (meta.name !== undefined && meta.name !== name)
    throw badRequest(
      `the name of the object (${show(meta.name)}) does not match the name on the URL (${name})`,
    );
  if (info.namespaced && meta.namespace !== undefined && meta.namespace !== namespace)
    throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
  if (meta.managedFields !== undefined && meta.managedFields !== null)
    throw badRequest("metadata.managedFields must be nil");
  validateFields(ctx, body, text.toString("utf8"));
  meta.name = name;
  assertStorable(body, "applied configuration");
  return body as KObject;
}

/**
 * PATCH with application/apply-patch+yaml: server-side apply of the object or its status. It
 * creates the object when there is none (201), and goes through the one update path otherwise;
 * a write that loses a compare-and-swap is applied again to the newer object.
 */
export async function applyPatch(ctx: RequestContext): Promise<void> {
  const { route: r, registry, reply } = ctx;
  const { info } = r;
  if (r.subresource !== undefined && r.subresource !== "status")
    throw new ApiError(
      415,
      "UnsupportedMediaType",
      `server-side apply is not supported for ${info.plural}/${r.subresource}`,
    );
  const config = await configuration(ctx);
  const fm = fieldManager(ctx, true);
  // Go's strconv.ParseBool, as upstream parses it (the Python client sends "True").
  const force = ["1", "t", "T", "true", "TRUE", "True"].includes(ctx.q.get("force") ?? "");
  const precondition = config.metadata.resourceVersion;
  for (let attempt = 1; ; attempt++) {
    const current = await registry.get(info, r.namespace, r.name!).catch((err: unknown) => {
      if (err instanceof ApiError && err.code === 404 && r.subresource === undefined) return undefined;
      throw err;
    });
    try {
      if (!current) {
        if (precondition) throw notFound(info.plural, r.name!, info.group);
        const obj = applyConfig(info, undefined, config, fm, force);
        await ctx.admit(obj);
        if (!r.subresource) await ctx.admitNew(obj);
        const managedFields = (obj.metadata.managedFields ?? []) as ManagedFieldsEntry[];
        const created = await registry.create(info, r.namespace, obj, ctx.dryRun, {
          operation: "Apply",
          managedFields,
        });
        return reply.json(201, created);
      }
      await ctx.admit(current);
      const next = applyConfig(info, current, config, fm, force);
      if (!r.subresource) await ctx.admitNew(next);
      const managedFields = (next.metadata.managedFields ?? []) as ManagedFieldsEntry[];
      next.metadata.resourceVersion = precondition ?? current.metadata.resourceVersion;
      const mode = r.subresource === "status" ? "status" : "main";
      return reply.json(
        200,
        await registry.update(info, current, next, mode, ctx.dryRun, { operation: "Apply", managedFields }),
      );
    } catch (err) {
      // Someone created or wrote it in between: apply again to what is there now.
      const again = isRetryable(err, "AlreadyExists") || (!precondition && isRetryable(err, "Conflict"));
      if (!again || attempt >= ATTEMPTS) throw err;
    }
  }
}
