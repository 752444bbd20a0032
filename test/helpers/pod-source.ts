/**
 * The pods informer's part the node agent uses, fed by hand: `set()` replaces the desired set (as a
 * relist would) and tells the handlers what was added, changed or removed. Before the first `set()`
 * it has not synced, like an informer whose first list has not arrived.
 */
import type { V1Pod } from "@kubernetes/client-node";
import type { InformerHandlers } from "../../api/informer.ts";
import type { PodSource } from "../../node/agent.ts";

export class StaticPods implements PodSource {
  private pods = new Map<string, V1Pod>();
  private synced = false;
  private handlers: InformerHandlers<V1Pod>[] = [];

  on(handlers: InformerHandlers<V1Pod>): void {
    this.handlers.push(handlers);
  }

  hasSynced(): boolean {
    return this.synced;
  }

  list(): V1Pod[] {
    return [...this.pods.values()];
  }

  set(pods: V1Pod[]): void {
    const old = this.pods;
    this.pods = new Map(pods.filter((p) => p.metadata?.uid).map((p) => [p.metadata!.uid!, p]));
    this.synced = true;
    for (const [uid, p] of this.pods) {
      const was = old.get(uid);
      if (!was) for (const h of this.handlers) h.add?.(p);
      else if (was !== p) for (const h of this.handlers) h.update?.(was, p);
    }
    for (const [uid, p] of old) if (!this.pods.has(uid)) for (const h of this.handlers) h.delete?.(p);
  }
}
