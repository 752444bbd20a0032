import { groupVersion } from "../../../api/resources.ts";
import { toTable } from "../../../api/table.ts";
import { storageKey } from "../../registry.ts";
import { wantsTable, type RequestContext } from "../context.ts";
import { checkContinueToken, intParam, resourceVersionParam, selectors } from "../query.ts";

export async function list(ctx: RequestContext): Promise<void> {
  const { route: r, q, reply, registry } = ctx;
  const sel = selectors(q);
  const limit = intParam(q, "limit");
  resourceVersionParam(q);
  const cont = q.get("continue") || undefined;
  if (cont) checkContinueToken(cont, storageKey(r.info, r.namespace), await registry.store.revision());
  const out = await registry.list(r.info, r.namespace, sel, limit && limit > 0 ? limit : undefined, cont);
  if (wantsTable(ctx.req)) {
    return reply.json(
      200,
      toTable(r.info.kind, out.items, {
        resourceVersion: out.resourceVersion,
        continue: out.continue,
        includeObject: q.get("includeObject") ?? undefined,
      }),
    );
  }
  const metadata: Record<string, unknown> = { resourceVersion: out.resourceVersion };
  if (out.continue) metadata.continue = out.continue;
  reply.json(200, {
    kind: `${r.info.kind}List`,
    apiVersion: groupVersion(r.info),
    metadata,
    items: out.items,
  });
}
