/**
 * The EndpointSlice controller: for each Service with a selector, keep its EndpointSlices
 * (discovery.k8s.io/v1) in step with its Endpoints, which the Endpoints controller derives from the
 * pods (endpointslices-for.ts is the pure part). Keyed by the Service; a change of the Service, its
 * Endpoints or one of its slices requeues it.
 */
import type { V1Endpoints, V1EndpointSlice, V1Service } from "@kubernetes/client-node";
import type { Informer } from "../../api/informer.ts";
import { objectKey, splitKey } from "../../api/informer.ts";
import { WorkQueue } from "../../api/workqueue.ts";
import { runController } from "../../api/controller.ts";
import type { ObjectWriter } from "../loop-client.ts";
import { isAlreadyExists, isConflict, isNotFound } from "../loop-client.ts";
import {
  endpointSlicesFor,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  SERVICE_NAME_LABEL,
  sliceEqual,
} from "./endpointslices-for.ts";

export class EndpointSliceController {
  readonly queue = new WorkQueue({ baseDelayMs: 50, maxDelayMs: 30_000 });

  constructor(
    private readonly services: Informer<V1Service>,
    private readonly endpoints: Informer<V1Endpoints>,
    private readonly slices: Informer<V1EndpointSlice>,
    private readonly w: ObjectWriter,
    private readonly onError?: (err: unknown) => void,
  ) {
    const byKey = (o: V1Service | V1Endpoints): void => this.queue.add(objectKey(o));
    services.on({ add: byKey, update: (_o, n) => byKey(n), delete: byKey });
    endpoints.on({ add: byKey, update: (_o, n) => byKey(n), delete: byKey });
    const bySlice = (s: V1EndpointSlice): void => {
      const svc = s.metadata?.labels?.[SERVICE_NAME_LABEL];
      if (svc && s.metadata?.labels?.[MANAGED_BY_LABEL] === MANAGED_BY)
        this.queue.add(`${s.metadata!.namespace}/${svc}`);
    };
    slices.on({ add: bySlice, update: (_o, n) => bySlice(n), delete: bySlice });
  }

  run(signal: AbortSignal, workers = 2): Promise<void> {
    return runController(signal, {
      queue: this.queue,
      reconcile: (k) => this.reconcile(k),
      workers,
      initialKeys: [
        ...[...this.services.cache.values()].map(objectKey),
        // Slices of Services that went while no controller ran.
        ...[...this.slices.cache.values()]
          .filter((s) => s.metadata?.labels?.[MANAGED_BY_LABEL] === MANAGED_BY)
          .map((s) => `${s.metadata!.namespace}/${s.metadata!.labels![SERVICE_NAME_LABEL]}`),
      ],
      onError: this.onError,
    });
  }

  async reconcile(key: string): Promise<void> {
    const { namespace, name } = splitKey(key);
    const svc = this.services.get(key);
    const want = svc ? (endpointSlicesFor(svc, this.endpoints.get(key)) ?? []) : [];
    const have = this.slices
      .list(namespace)
      .filter(
        (s) =>
          s.metadata?.labels?.[SERVICE_NAME_LABEL] === name &&
          s.metadata?.labels?.[MANAGED_BY_LABEL] === MANAGED_BY,
      );
    const haveByName = new Map(have.map((s) => [s.metadata!.name!, s]));
    try {
      for (const slice of want) {
        const cur = haveByName.get(slice.metadata!.name!);
        haveByName.delete(slice.metadata!.name!);
        if (!cur) await this.w.create("endpointslices", namespace, slice);
        else if (!sliceEqual(cur, slice))
          await this.w.update("endpointslices", namespace, {
            ...slice,
            metadata: { ...cur.metadata, ...slice.metadata, resourceVersion: cur.metadata?.resourceVersion },
          });
      }
      for (const stale of haveByName.keys())
        await this.w.delete("endpointslices", namespace, stale).catch((e: unknown) => {
          if (!isNotFound(e)) throw e;
        });
    } catch (err) {
      // Cache behind: the watch event for the newer slice requeues us.
      if (isConflict(err) || isAlreadyExists(err)) return this.queue.addAfter(key, 200);
      throw err;
    }
  }
}
