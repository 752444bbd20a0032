import { badRequest } from "../../api/status.ts";
import type { FieldManager, FieldsWrite } from "../registry/apply/index.ts";
import type { RequestContext } from "./context.ts";

/** kube-apiserver's limit on a field manager's name. */
const MAX_MANAGER_LENGTH = 128;

/**
 * The field manager of a write: the `fieldManager` query parameter, else (not for apply) the
 * client's User-Agent up to its first "/" (`kubectl`), as kube-apiserver names it.
 */
export function fieldManager(ctx: RequestContext, apply: boolean): FieldManager {
  let manager = ctx.q.get("fieldManager") ?? undefined;
  if (manager !== undefined && [...manager].length > MAX_MANAGER_LENGTH)
    throw badRequest(`fieldManager: Too long: may not be more than ${MAX_MANAGER_LENGTH} bytes`);
  if (manager === undefined || manager === "") {
    if (apply)
      throw badRequest(
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
      );
    manager = (ctx.req.headers["user-agent"] ?? "").split("/")[0]!.slice(0, MAX_MANAGER_LENGTH) || "unknown";
  }
  const out: FieldManager = { manager };
  if (ctx.route.subresource) out.subresource = ctx.route.subresource;
  return out;
}

/** What an ordinary write (create, update, a patch that is not apply) records in managedFields. */
export function updateFields(ctx: RequestContext): FieldsWrite {
  return { operation: "Update", ...fieldManager(ctx, false) };
}
