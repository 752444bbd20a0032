/**
 * The ServiceAccounts controller (kube-controller-manager's serviceaccount-controller): every
 * active namespace has a ServiceAccount `default`; one deleted is made again. Keys are namespace names.
 */
import type { V1Namespace, V1ServiceAccount } from "@kubernetes/client-node";
import { runController } from "../../api/controller.ts";
import type { Informer } from "../../api/informer.ts";
import { WorkQueue } from "../../api/workqueue.ts";
import type { ObjectWriter } from "../loop-client.ts";
import { errorCode, isAlreadyExists, isNotFound } from "../loop-client.ts";

export const DEFAULT_SERVICE_ACCOUNT = "default";

export class ServiceAccountsController {
  readonly queue = new WorkQueue({ baseDelayMs: 50, maxDelayMs: 30_000 });

  constructor(
    private readonly namespaces: Informer<V1Namespace>,
    private readonly serviceAccounts: Informer<V1ServiceAccount>,
    private readonly w: ObjectWriter,
    private readonly onError?: (err: unknown) => void,
  ) {
    const ns = (n: V1Namespace): void => {
      if (n.metadata?.name) this.queue.add(n.metadata.name);
    };
    namespaces.on({ add: ns, update: (_o, n) => ns(n) });
    serviceAccounts.on({
      delete: (sa) => {
        if (sa.metadata?.name === DEFAULT_SERVICE_ACCOUNT && sa.metadata.namespace)
          this.queue.add(sa.metadata.namespace);
      },
    });
  }

  run(signal: AbortSignal, workers = 1): Promise<void> {
    return runController(signal, {
      queue: this.queue,
      reconcile: (k) => this.reconcile(k),
      workers,
      initialKeys: [...this.namespaces.cache.values()].map((n) => n.metadata?.name ?? "").filter(Boolean),
      onError: this.onError,
    });
  }

  async reconcile(namespace: string): Promise<void> {
    const ns = this.namespaces.get(namespace);
    if (!ns || ns.status?.phase === "Terminating" || ns.metadata?.deletionTimestamp) return;
    if (this.serviceAccounts.get(`${namespace}/${DEFAULT_SERVICE_ACCOUNT}`)) return;
    try {
      await this.w.create<V1ServiceAccount>("serviceaccounts", namespace, {
        apiVersion: "v1",
        kind: "ServiceAccount",
        metadata: { name: DEFAULT_SERVICE_ACCOUNT },
      });
    } catch (err) {
      // Already there (cache behind), or the namespace went meanwhile (403 while it terminates, 404 once gone).
      if (isAlreadyExists(err) || isNotFound(err) || errorCode(err) === 403) return;
      throw err;
    }
  }
}
