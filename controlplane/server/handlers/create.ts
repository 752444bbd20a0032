import type { ResourceInfo } from "../../../api/resources.ts";
import { ApiError, badRequest } from "../../../api/status.ts";
import type { FieldsWrite } from "../../registry/apply/index.ts";
import type { KObject, Registry } from "../../registry.ts";
import { bodyText, objectBody } from "../body.ts";
import type { RequestContext } from "../context.ts";
import { updateFields } from "../field-manager.ts";
import { validateFields } from "../field-validation.ts";
import { success } from "../reply.ts";
import { admitPodServiceAccount } from "../../serviceaccount/admission.ts";
import { bind, evict, requestToken } from "../subresources/index.ts";

export async function create(ctx: RequestContext): Promise<void> {
  const { route: r, registry, reply } = ctx;
  const { info } = r;
  if (r.subresource === "eviction") {
    if (info.kind !== "Pod") throw new ApiError(404, "NotFound", "eviction is a pods subresource");
    const eviction = await objectBody(ctx.req, info, "Eviction", true);
    return reply.json(201, await evict(registry, r.namespace!, r.name!, eviction, ctx.dryRun));
  }
  if (r.subresource === "token") {
    const request = await objectBody(ctx.req, info, "TokenRequest", true);
    await ctx.admit(request);
    return reply.json(
      201,
      await requestToken(registry, ctx.server.tokens, r.namespace!, r.name!, request, ctx.dryRun),
    );
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
  validateFields(ctx, body, bodyText(body));
  reply.json(
    201,
    await createObject(
      registry,
      info,
      r.namespace,
      body,
      async (obj) => {
        await ctx.admit(obj);
        await ctx.admitNew(obj);
      },
      ctx.dryRun,
      updateFields(ctx),
    ),
  );
}

/** A create of a checked body (HTTP or in-process, controlplane/local-client.ts), after authorization. */
export async function createObject(
  registry: Registry,
  info: ResourceInfo,
  namespace: string | undefined,
  body: KObject,
  admit: (obj: KObject) => Promise<void>,
  dryRun: boolean,
  fields?: FieldsWrite,
): Promise<KObject> {
  if (info.namespaced) {
    const bodyNs = body.metadata.namespace;
    if (bodyNs && bodyNs !== namespace) {
      throw badRequest(
        "the namespace of the provided object does not match the namespace sent on the request",
      );
    }
  }
  await admit(body);
  if (info.kind === "Pod") await admitPodServiceAccount(registry, namespace, body);
  return registry.create(info, namespace, body, dryRun, fields);
}
