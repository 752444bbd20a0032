/**
 * The informer's list and watch calls over the typed REST client (or anything with its `list` and
 * `watch`, such as the node agent's failover client), one resource across namespaces or in one.
 */
import type { ListOptions, ObjectList, Plural, ResourceTypes, WatchEvent, WatchOptions } from "./client.ts";
import type { KubeObject, ListWatcher, WatchEvent as InformerEvent } from "./informer.ts";

export interface ListWatchClient {
  list<P extends Plural>(plural: P, opts?: ListOptions): Promise<ObjectList<ResourceTypes[P]>>;
  watch<P extends Plural>(plural: P, opts?: WatchOptions): AsyncIterable<WatchEvent<ResourceTypes[P]>>;
}

/** `fieldSelector` narrows both calls (the agent's `spec.nodeName=NODE`). */
export function clientListWatch(c: ListWatchClient) {
  return <T extends KubeObject>(
    resource: Plural,
    namespace?: string,
    opts: { fieldSelector?: string } = {},
  ): ListWatcher<T> => {
    const scope = {
      ...(namespace ? { namespace } : {}),
      ...(opts.fieldSelector ? { fieldSelector: opts.fieldSelector } : {}),
    };
    return {
      async list() {
        const l = await c.list(resource, scope);
        return { items: l.items as unknown as T[], resourceVersion: l.metadata?.resourceVersion ?? "" };
      },
      watch(resourceVersion, signal) {
        return c.watch(resource, {
          ...scope,
          resourceVersion,
          allowWatchBookmarks: true,
          // Servers end watches after a while; spread the reconnects.
          timeoutSeconds: 300 + Math.floor(Math.random() * 300),
          ...(signal ? { signal } : {}),
        }) as unknown as AsyncIterable<InformerEvent<T>>;
      },
    };
  };
}
