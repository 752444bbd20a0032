import type { KObject } from "./types.ts";

/**
 * Objects of the watch cache are shared by every subscriber: the JSON of one is made once per
 * event and reused by each watch stream and each in-process copy (kube-apiserver's
 * cachingObject), not once per watcher. Keyed by the object and checked against its
 * resourceVersion, which withVersion sets.
 */
const serialized = new WeakMap<object, { rv: string | undefined; json: string }>();

export function objectJson(o: KObject): string {
  const rv = o.metadata?.resourceVersion;
  const hit = serialized.get(o);
  if (hit && hit.rv === rv) return hit.json;
  const json = JSON.stringify(o);
  serialized.set(o, { rv, json });
  return json;
}

/** A private deep copy of a shared object, from its JSON made once. */
export function copyOf<T extends KObject>(o: T): T {
  return JSON.parse(objectJson(o)) as T;
}
