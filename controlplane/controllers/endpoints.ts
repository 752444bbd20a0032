/** The Endpoints controller loop: for each Service with a selector, keep its Endpoints = endpointsFor(...). */
import type { V1Endpoints, V1Pod, V1Service } from "@kubernetes/client-node";
import type { Informer } from "../../api/informer.ts";
import { objectKey, splitKey } from "../../api/informer.ts";
import { WorkQueue } from "../../api/workqueue.ts";
import { runOverCache } from "../../api/controller.ts";
import type { ObjectWriter } from "../loop-client.ts";
import { isAlreadyExists, isConflict, isNotFound } from "../loop-client.ts";
import { endpointsEqual, endpointsFor } from "./endpoints-for.ts";
import { onEvery } from "./enqueue.ts";

export class EndpointsController {
  readonly queue = new WorkQueue({ baseDelayMs: 50, maxDelayMs: 30_000 });
  /** Services seen with a selector: only their Endpoints are ours to delete when they go. */
  private readonly selecting = new Set<string>();

  constructor(
    private readonly services: Informer<V1Service>,
    private readonly pods: Informer<V1Pod>,
    private readonly endpoints: Informer<V1Endpoints>,
    private readonly w: ObjectWriter,
    private readonly onError?: (err: unknown) => void,
  ) {
    const enqueue = (s: V1Service): void => {
      if (Object.keys(s.spec?.selector ?? {}).length > 0) this.selecting.add(objectKey(s));
      this.queue.add(objectKey(s));
    };
    services.on(onEvery(enqueue));
    const forPod = (p: V1Pod): void => {
      for (const s of this.services.list(p.metadata?.namespace)) {
        const sel = s.spec?.selector;
        if (sel && Object.entries(sel).every(([k, v]) => p.metadata?.labels?.[k] === v)) enqueue(s);
      }
    };
    pods.on({ add: forPod, update: (o, n) => (forPod(o), forPod(n)), delete: forPod });
    // Someone else changed or removed our Endpoints: put them back.
    endpoints.on({
      update: (_o, e) => this.queue.add(objectKey(e)),
      delete: (e) => this.queue.add(objectKey(e)),
    });
  }

  run(signal: AbortSignal, workers = 2): Promise<void> {
    return runOverCache(signal, this, this.services.cache, { workers, onError: this.onError });
  }

  async reconcile(key: string): Promise<void> {
    const svc = this.services.get(key);
    const have = this.endpoints.get(key);
    const { namespace, name } = splitKey(key);
    if (!svc) {
      // The Service is gone: its Endpoints go too.
      if (have && this.selecting.has(key))
        await this.w.delete("endpoints", namespace, name).catch((e) => {
          if (!isNotFound(e)) throw e;
        });
      this.selecting.delete(key);
      return;
    }
    const want = endpointsFor(svc, this.pods.list(namespace));
    if (!want || endpointsEqual(have, want)) return;
    try {
      if (have)
        await this.w.update("endpoints", namespace, {
          ...want,
          metadata: { ...have.metadata, ...want.metadata, resourceVersion: have.metadata?.resourceVersion },
        });
      else await this.w.create("endpoints", namespace, want);
    } catch (err) {
      // Cache behind: the watch event for the newer Endpoints requeues us.
      if (isConflict(err) || isAlreadyExists(err)) return this.queue.addAfter(key, 200);
      throw err;
    }
  }
}
