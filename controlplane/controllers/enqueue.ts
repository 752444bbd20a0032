/** Informer handlers that turn events into work-queue keys, as client-go's handler.Enqueue* do. */
import { objectKey, type InformerHandlers, type KubeObject } from "../../api/informer.ts";
import type { WorkQueue } from "../../api/workqueue.ts";
import { controllerRef } from "./labels.ts";

/** Handlers that call `fn` with the object of every add, update (its new version) and delete. */
export function onEvery<T>(fn: (obj: T) => void): InformerHandlers<T> {
  return { add: fn, update: (_old, obj) => fn(obj), delete: fn };
}

/** Handlers that queue each object's own key. */
export function enqueueObject<T extends KubeObject>(queue: WorkQueue): InformerHandlers<T> {
  return onEvery((o: T) => queue.add(objectKey(o)));
}

/** Handlers that queue the key of the `kind` object that controls each object (its controller ownerReference). */
export function enqueueController<T extends KubeObject & Parameters<typeof controllerRef>[0]>(
  queue: WorkQueue,
  kind: string,
): InformerHandlers<T> {
  return onEvery((o: T) => {
    const ref = controllerRef(o);
    if (ref?.kind === kind) queue.add(`${o.metadata?.namespace}/${ref.name}`);
  });
}
