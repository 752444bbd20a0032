import { RESOURCES } from "../../../api/resources.ts";
import { ApiError } from "../../../api/status.ts";
import { Strategy, type StrategyContext } from "../strategy.ts";
import {
  mapStoreError,
  storageKey,
  SYSTEM_NAMESPACES,
  timestamp,
  withVersion,
  type DeleteOptions,
  type KObject,
} from "../types.ts";

/** Namespaces: deleting one marks it Terminating, then removes everything in it and itself. */
export class NamespaceStrategy extends Strategy {
  override async delete(current: KObject, opts: DeleteOptions, ctx: StrategyContext): Promise<KObject> {
    const name = current.metadata.name!;
    if (SYSTEM_NAMESPACES.includes(name))
      throw new ApiError(
        403,
        "Forbidden",
        `namespace "${name}" is a system namespace and may not be deleted`,
      );
    const next = structuredClone(current);
    next.metadata.deletionTimestamp ??= timestamp();
    next.status = { phase: "Terminating" };
    delete next.metadata.resourceVersion;
    if (opts.dryRun) return next;
    const rev = await ctx.store
      .update(storageKey(this.info, undefined, name), next, Number(current.metadata.resourceVersion))
      .catch((err: unknown) => mapStoreError(err, this.info, name));
    void purge(name, ctx).catch(() => undefined);
    return withVersion(next, rev);
  }
}

async function purge(namespace: string, ctx: StrategyContext): Promise<void> {
  for (const info of RESOURCES.filter((r) => r.namespaced)) {
    const page = await ctx.store.list<KObject>(storageKey(info, namespace));
    for (const item of page.items) {
      await ctx.store.delete(storageKey(info, namespace, item.value.metadata.name)).catch(() => undefined);
      await ctx.afterDelete(info, item.value);
    }
  }
  await ctx.store.delete(`/registry/namespaces/${namespace}`).catch(() => undefined);
}
