import type { ResourceInfo } from "../../api/resources.ts";
import { matchesFields, matchesLabels } from "../../api/selectors.ts";
import { ApiError, badRequest, gone } from "../../api/status.ts";
import { StoreError, type StoreEvent } from "../storage/etcd-store.ts";
import type { WatchCache } from "../storage/watch-cache.ts";
import { storageKey, withVersion, type KObject, type Selectors, type WatchEvent } from "./types.ts";

export interface WatchSource {
  list(
    info: ResourceInfo,
    namespace: string | undefined,
    sel: Selectors,
  ): Promise<{ items: KObject[]; resourceVersion: string }>;
  cache(info: ResourceInfo): WatchCache<KObject>;
}

export interface WatchHandle {
  stop: () => Promise<void>;
  lastRevision: () => number;
}

/**
 * Streams events after `resourceVersion` ("" or "0": the current objects as ADDED first).
 * Objects leaving the selection arrive as DELETED, as in Kubernetes.
 */
export async function watchObjects(
  source: WatchSource,
  info: ResourceInfo,
  namespace: string | undefined,
  sel: Selectors,
  resourceVersion: string | undefined,
  send: (ev: WatchEvent) => void,
  onEnd: (err?: ApiError) => void,
): Promise<WatchHandle> {
  const prefix = storageKey(info, namespace);
  const matches = (o: KObject | undefined): boolean =>
    !!o && matchesLabels(sel.labels, o.metadata.labels) && matchesFields(sel.fields, o);
  let from: number;
  if (!resourceVersion || resourceVersion === "0") {
    const current = await source.list(info, namespace, sel);
    for (const o of current.items) send({ type: "ADDED", object: o });
    from = Number(current.resourceVersion);
  } else {
    from = Number(resourceVersion);
    if (!Number.isInteger(from) || from < 0) throw badRequest(`invalid resourceVersion "${resourceVersion}"`);
  }
  let last = from;
  const onEvent = (ev: StoreEvent<KObject>): void => {
    last = ev.modRevision;
    if (ev.type === "put") {
      const obj = withVersion(ev.value, ev.modRevision);
      const now = matches(obj);
      const before = matches(ev.prev);
      if (now) send({ type: ev.prev && before ? "MODIFIED" : "ADDED", object: obj });
      else if (before) send({ type: "DELETED", object: obj });
    } else if (ev.prev && matches(ev.prev)) {
      send({ type: "DELETED", object: withVersion(ev.prev, ev.modRevision) });
    }
  };
  // The watch cache names the oldest revision it could resume from, as kube-apiserver's does.
  const tooOld = (err: StoreError): ApiError =>
    gone(/^too old resource version: /.test(err.message) ? err.message : `too old resource version: ${from}`);
  const onError = (err: Error): void => {
    if (err instanceof StoreError && err.reason === "Compacted") onEnd(tooOld(err));
    else onEnd(new ApiError(500, "InternalError", `watch failed: ${err.message}`));
  };
  try {
    // etcd's progress notifications move the BOOKMARK resourceVersion on while nothing changes
    const onProgress = (rev: number): void => void (last = Math.max(last, rev));
    const stop = await source.cache(info).subscribe(prefix, from, onEvent, onError, onProgress);
    return { stop, lastRevision: () => last };
  } catch (err) {
    if (err instanceof StoreError && err.reason === "Compacted") throw tooOld(err);
    throw err;
  }
}
