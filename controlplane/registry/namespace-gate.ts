import { RESOURCES } from "../../api/resources.ts";
import { ApiError, notFound } from "../../api/status.ts";
import type { EtcdStore } from "../storage/etcd-store.ts";
import { storageKey, type KObject } from "./types.ts";
import type { WatchSource } from "./watch.ts";

/**
 * Whether a namespace takes new objects: it exists and is not terminating. Every namespace is kept
 * in memory from the watch cache, so creates skip an etcd read.
 */
export class NamespaceGate {
  private namespaces: Map<string, KObject> | undefined;
  private loading: Promise<void> | undefined;

  constructor(
    private readonly store: EtcdStore,
    private readonly source: WatchSource,
  ) {}

  private load(): Promise<void> {
    this.loading ??= (async () => {
      const info = RESOURCES.find((r) => r.kind === "Namespace")!;
      const list = await this.source.list(info, undefined, { labels: [], fields: [] });
      const map = new Map(list.items.map((n) => [n.metadata.name!, n]));
      await this.source.cache(info).subscribe(
        storageKey(info, undefined),
        Number(list.resourceVersion),
        (ev) => {
          const name = ev.key.slice(ev.key.lastIndexOf("/") + 1);
          if (ev.type === "put") map.set(name, ev.value);
          else map.delete(name);
        },
        () => {
          this.namespaces = undefined;
          this.loading = undefined;
        },
      );
      this.namespaces = map;
    })().catch((err: unknown) => {
      this.loading = undefined;
      throw err;
    });
    return this.loading;
  }

  async mustAccept(namespace: string): Promise<void> {
    await this.load().catch(() => undefined);
    // A namespace another apiserver created a moment ago may not be in the cache yet: ask etcd.
    const ns =
      this.namespaces?.get(namespace) ??
      (await this.store.get<KObject>(`/registry/namespaces/${namespace}`))?.value;
    if (!ns) throw notFound("namespaces", namespace);
    if (ns.metadata.deletionTimestamp) {
      throw new ApiError(
        403,
        "Forbidden",
        `unable to create new content in namespace ${namespace} because it is being terminated`,
      );
    }
  }
}
