/**
 * The root CA publisher (kube-controller-manager's root-ca-cert-publisher): a ConfigMap
 * `kube-root-ca.crt` with the cluster CA as `ca.crt` in every active namespace, put back when it
 * is deleted or changed. Pods read it through their service-account volume. Keys are namespace names.
 */
import type { V1ConfigMap, V1Namespace } from "@kubernetes/client-node";
import { runController } from "../../api/controller.ts";
import type { Informer } from "../../api/informer.ts";
import { WorkQueue } from "../../api/workqueue.ts";
import type { ObjectWriter } from "../loop-client.ts";
import { errorCode, isAlreadyExists, isNotFound } from "../loop-client.ts";

export const ROOT_CA_CONFIGMAP = "kube-root-ca.crt";
const DESCRIPTION =
  "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

export class RootCaPublisher {
  readonly queue = new WorkQueue({ baseDelayMs: 50, maxDelayMs: 30_000 });

  constructor(
    private readonly namespaces: Informer<V1Namespace>,
    private readonly w: ObjectWriter,
    private readonly caPem: string,
    private readonly onError?: (err: unknown) => void,
    private readonly resyncMs = 60_000,
  ) {
    const ns = (n: V1Namespace): void => {
      if (n.metadata?.name) this.queue.add(n.metadata.name);
    };
    namespaces.on({ add: ns, update: (_o, n) => ns(n) });
  }

  private names(): string[] {
    return [...this.namespaces.cache.values()].map((n) => n.metadata?.name ?? "").filter(Boolean);
  }

  run(signal: AbortSignal): Promise<void> {
    return runController(signal, {
      queue: this.queue,
      reconcile: (k) => this.reconcile(k),
      initialKeys: this.names(),
      // No informer on ConfigMaps (every one of the cluster): a deleted or edited one comes back on the resync.
      resync: { everyMs: this.resyncMs, keys: () => this.names() },
      onError: this.onError,
    });
  }

  async reconcile(namespace: string): Promise<void> {
    const ns = this.namespaces.get(namespace);
    if (!ns || ns.status?.phase === "Terminating" || ns.metadata?.deletionTimestamp) return;
    const tolerate = (err: unknown): void => {
      if (isAlreadyExists(err) || isNotFound(err) || errorCode(err) === 403) return;
      throw err;
    };
    const have = await this.w.get<V1ConfigMap>("configmaps", namespace, ROOT_CA_CONFIGMAP);
    if (have?.data?.["ca.crt"] === this.caPem) return;
    const want: V1ConfigMap = {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: {
        ...(have?.metadata ?? {}),
        name: ROOT_CA_CONFIGMAP,
        namespace,
        annotations: { ...(have?.metadata?.annotations ?? {}), "kubernetes.io/description": DESCRIPTION },
      },
      data: { "ca.crt": this.caPem },
    };
    if (have) await this.w.update("configmaps", namespace, want).catch(tolerate);
    else await this.w.create("configmaps", namespace, want).catch(tolerate);
  }
}
