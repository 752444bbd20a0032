import type { ResourceInfo } from "../../api/resources.ts";
import { conflict } from "../../api/status.ts";
import type { EtcdStore } from "../storage/etcd-store.ts";
import type { Strategy, StrategyContext } from "./strategy.ts";
import {
  FROM_ETCD,
  mapStoreError,
  storageKey,
  timestamp,
  withVersion,
  type DeleteOptions,
  type KObject,
} from "./types.ts";

/**
 * One try at deleting an object (the registry retries it on a write conflict): the preconditions,
 * the finalizers the garbage collector reads (foregroundDeletion, orphan), the grace period; an
 * object with finalizers or a grace period is marked (deletionTimestamp), any other is removed from
 * etcd. `cached`: `current` is the watch cache's copy (an unchanged answer is read from etcd).
 */
export async function deleteStep(
  store: EtcdStore,
  strategy: Strategy,
  ctx: StrategyContext,
  info: ResourceInfo,
  current: KObject,
  opts: DeleteOptions,
  cached = false,
): Promise<KObject> {
  const meta = current.metadata;
  const name = meta.name!;
  const pre = opts.preconditions;
  if (pre?.uid && pre.uid !== meta.uid) throw conflict(info.plural, name, info.group);
  if (pre?.resourceVersion && pre.resourceVersion !== meta.resourceVersion)
    throw conflict(info.plural, name, info.group);
  if (strategy.delete) return strategy.delete(current, opts, ctx);
  const key = storageKey(info, meta.namespace, name);
  const rev = Number(meta.resourceVersion);
  const next = structuredClone(current);
  const nm = next.metadata;
  // A stored list that is not one (from before validation) must not make the object undeletable.
  const finalizers = Array.isArray(nm.finalizers) ? nm.finalizers.filter((f) => typeof f === "string") : [];
  // Recorded for the garbage collector, as Kubernetes does, so it can orphan or wait for dependents.
  if (opts.propagationPolicy === "Foreground" && !finalizers.includes("foregroundDeletion"))
    finalizers.push("foregroundDeletion");
  if (opts.propagationPolicy === "Orphan" && !finalizers.includes("orphan")) finalizers.push("orphan");
  const grace = strategy.gracePeriod(current, opts);
  if (grace === "unchanged") {
    if (cached) throw FROM_ETCD; // answer with etcd's version of it
    return current; // already terminating with a shorter or equal grace
  }
  if (finalizers.length > 0 || grace > 0) {
    if (finalizers.length) nm.finalizers = finalizers;
    else delete nm.finalizers;
    const now = Date.now();
    if (grace > 0) {
      nm.deletionTimestamp = timestamp(now + grace * 1000);
      nm.deletionGracePeriodSeconds = grace;
    } else {
      nm.deletionTimestamp ??= timestamp(now);
      nm.deletionGracePeriodSeconds ??= 0;
    }
    if (nm.generation !== undefined && !meta.deletionTimestamp) nm.generation += 1;
    delete nm.resourceVersion;
    if (opts.dryRun) return next;
    const newRev = await store.update(key, next, rev).catch((err: unknown) => mapStoreError(err, info, name));
    return withVersion(next, newRev);
  }
  if (opts.dryRun) return current;
  await store.delete(key, rev).catch((err: unknown) => mapStoreError(err, info, name));
  await strategy.afterDelete(current);
  return current;
}
