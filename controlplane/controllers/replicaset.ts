/** The ReplicaSet controller loop: informers on ReplicaSets and pods, reconcile = replicaSetDiff. */
import type { V1Pod, V1ReplicaSet } from "@kubernetes/client-node";
import type { Informer } from "../../api/informer.ts";
import { objectKey } from "../../api/informer.ts";
import { WorkQueue } from "../../api/workqueue.ts";
import { runOverCache } from "../../api/controller.ts";
import type { ObjectWriter } from "../loop-client.ts";
import { isConflict, isNotFound, recordEvent } from "../loop-client.ts";
import { stableStringify } from "../../lib/stable-json.ts";
import { Expectations } from "./expectations.ts";
import { controllerRef, ownerRefFor, selectorMatches } from "./labels.ts";
import { generateName } from "./names.ts";
import { replicaSetDiff } from "./replicaset-diff.ts";

/** At most this many pod creations per reconcile, so a huge scale-up cannot flood the server at once. */
const BURST = 500;
/** The first batch of creations (upstream's SlowStartInitialBatchSize); each next batch doubles. */
const SLOW_START_INITIAL = 1;

/** What differs between the ReplicaSet controller and the ReplicationController one it also runs. */
export interface ReplicaSetKind {
  kind: "ReplicaSet" | "ReplicationController";
  apiVersion: string;
  resource: "replicasets" | "replicationcontrollers";
  source: string;
  /** The object as a ReplicaSet (a ReplicationController's map selector as matchLabels). */
  asReplicaSet: (o: V1ReplicaSet) => V1ReplicaSet;
}

export const REPLICA_SET_KIND: ReplicaSetKind = {
  kind: "ReplicaSet",
  apiVersion: "apps/v1",
  resource: "replicasets",
  source: "replicaset-controller",
  asReplicaSet: (o) => o,
};

export const REPLICATION_CONTROLLER_KIND: ReplicaSetKind = {
  kind: "ReplicationController",
  apiVersion: "v1",
  resource: "replicationcontrollers",
  source: "replication-controller",
  asReplicaSet: (o) => ({
    ...o,
    spec: {
      ...o.spec!,
      selector: { matchLabels: (o.spec?.selector ?? {}) as unknown as Record<string, string> },
    },
  }),
};

/** Pods by their controller's UID, orphans by `orphan/NAMESPACE` (client-go's PodControllerUIDIndex). */
const CONTROLLER_INDEX = "replicaset-controller/controller";
function controllerIndex(p: V1Pod): string[] {
  const ref = controllerRef(p);
  if (ref) return ref.uid ? [ref.uid] : [];
  return [`orphan/${p.metadata?.namespace ?? ""}`];
}

export class ReplicaSetController {
  readonly queue = new WorkQueue({ baseDelayMs: 50, maxDelayMs: 30_000 });
  readonly expectations = new Expectations();

  constructor(
    private readonly replicaSets: Informer<V1ReplicaSet>,
    private readonly pods: Informer<V1Pod>,
    private readonly w: ObjectWriter,
    private readonly onError?: (err: unknown) => void,
    private readonly k: ReplicaSetKind = REPLICA_SET_KIND,
  ) {
    pods.addIndex(CONTROLLER_INDEX, controllerIndex);
    const enqueueRs = (rs: V1ReplicaSet): void => this.queue.add(objectKey(rs));
    replicaSets.on({
      add: enqueueRs,
      update: (_o, n) => enqueueRs(n),
      delete: (rs) => {
        this.expectations.forget(objectKey(rs));
        enqueueRs(rs);
      },
    });
    pods.on({
      add: (p) => {
        const owner = this.ownerKey(p);
        if (owner) this.expectations.creationObserved(owner);
        this.enqueueFor(p);
      },
      update: (old, p) => {
        if (p.metadata?.deletionTimestamp && !old.metadata?.deletionTimestamp) {
          const owner = this.ownerKey(p);
          if (owner) this.expectations.deletionObserved(owner, objectKey(p));
        }
        this.enqueueFor(p);
        if (stableStringify(old.metadata?.labels) !== stableStringify(p.metadata?.labels))
          this.enqueueFor(old);
      },
      delete: (p) => {
        const owner = this.ownerKey(p);
        if (owner) this.expectations.deletionObserved(owner, objectKey(p));
        this.enqueueFor(p);
      },
    });
  }

  private ownerKey(p: V1Pod): string | undefined {
    const ref = controllerRef(p);
    return ref?.kind === this.k.kind ? `${p.metadata?.namespace}/${ref.name}` : undefined;
  }

  /** The pod's controller, or for an orphan every ReplicaSet that might adopt it. */
  private enqueueFor(p: V1Pod): void {
    const owner = this.ownerKey(p);
    if (owner) return this.queue.add(owner);
    if (controllerRef(p)) return;
    for (const rs of this.replicaSets.list(p.metadata?.namespace))
      if (selectorMatches(this.k.asReplicaSet(rs).spec?.selector, p.metadata?.labels))
        this.queue.add(objectKey(rs));
  }

  run(signal: AbortSignal, workers = 2): Promise<void> {
    return runOverCache(signal, this, this.replicaSets.cache, { workers, onError: this.onError });
  }

  async reconcile(key: string): Promise<void> {
    const stored = this.replicaSets.get(key);
    if (!stored) return;
    const rs = this.k.asReplicaSet(stored);
    const ns = rs.metadata?.namespace ?? "default";
    // What replicaSetDiff looks at: our pods and the namespace's orphans (not every pod there).
    const candidates = [
      ...this.pods
        .byIndex(CONTROLLER_INDEX, rs.metadata?.uid ?? "")
        .filter((p) => p.metadata?.namespace === ns),
      ...this.pods.byIndex(CONTROLLER_INDEX, `orphan/${ns}`),
    ];
    const diff = replicaSetDiff(rs, candidates, Date.now());
    for (const p of diff.adopt)
      await this.updatePod(p, [
        ...(p.metadata?.ownerReferences ?? []),
        ownerRefFor(rs, this.k.apiVersion, this.k.kind),
      ]);
    for (const p of diff.release)
      await this.updatePod(
        p,
        (p.metadata?.ownerReferences ?? []).filter((r) => r.uid !== rs.metadata?.uid),
      );
    if (this.expectations.satisfied(key)) {
      if (diff.create > 0) await this.createPods(rs, key, Math.min(diff.create, BURST));
      else if (diff.delete.length > 0) await this.deletePods(rs, key, diff.delete);
    }
    const cur = stableStringify({ ...rs.status, conditions: undefined });
    const want = stableStringify({ ...rs.status, ...diff.status, conditions: undefined });
    if (cur !== want) {
      try {
        await this.w.updateStatus(this.k.resource, ns, {
          ...stored,
          status: { ...stored.status, ...diff.status },
        });
      } catch (err) {
        if (!isConflict(err) && !isNotFound(err)) throw err;
        if (isConflict(err)) this.queue.addAfter(key, 100); // newer object on its way through the watch
      }
    }
  }

  private async updatePod(
    p: V1Pod,
    ownerReferences: V1Pod["metadata"] extends infer M
      ? M extends { ownerReferences?: infer R }
        ? R
        : never
      : never,
  ): Promise<void> {
    try {
      await this.w.update("pods", p.metadata?.namespace, {
        ...p,
        metadata: { ...p.metadata, ownerReferences },
      });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  /** An event about `rs`, from this controller's source. */
  private event(
    rs: V1ReplicaSet,
    type: "Normal" | "Warning",
    reason: string,
    message: string,
  ): Promise<void> {
    return recordEvent(
      this.w,
      this.k.source,
      { ...rs, apiVersion: this.k.apiVersion, kind: this.k.kind },
      type,
      reason,
      message,
    );
  }

  private async createPods(rs: V1ReplicaSet, key: string, n: number): Promise<void> {
    this.expectations.expect(key, n, []);
    const ns = rs.metadata?.namespace ?? "default";
    const t = rs.spec?.template;
    const create = (): Promise<V1Pod> =>
      this.w.create<V1Pod>("pods", ns, {
        apiVersion: "v1",
        kind: "Pod",
        metadata: {
          name: generateName(`${rs.metadata?.name}-`),
          namespace: ns,
          labels: t?.metadata?.labels,
          annotations: t?.metadata?.annotations,
          ownerReferences: [ownerRefFor(rs, this.k.apiVersion, this.k.kind)],
        },
        spec: structuredClone(t?.spec) ?? { containers: [] },
      });
    // Upstream's slowStartBatch: batches of 1, 2, 4, ... so a ReplicaSet whose pods are all
    // refused (quota, a terminating namespace, a bad template) costs one call, not 500, and a
    // healthy one reaches the server in waves instead of one flood.
    let created = 0;
    let reason: Error | undefined;
    for (let batch = Math.min(n, SLOW_START_INITIAL); created < n; batch = Math.min(2 * batch, n - created)) {
      const results = await Promise.allSettled(Array.from({ length: batch }, create));
      const failed = results.filter((r) => r.status === "rejected");
      created += batch - failed.length;
      if (failed.length > 0) {
        reason = (failed[0] as PromiseRejectedResult).reason as Error;
        break;
      }
    }
    // Every pod not created (refused, or skipped after a refusal) will never be observed.
    for (let i = created; i < n; i++) this.expectations.creationFailed(key);
    if (reason) {
      await this.event(rs, "Warning", "FailedCreate", `Error creating: ${reason?.message ?? reason}`);
      throw reason;
    }
    await this.event(rs, "Normal", "SuccessfulCreate", `Created ${n} pod(s)`);
  }

  private async deletePods(rs: V1ReplicaSet, key: string, pods: V1Pod[]): Promise<void> {
    this.expectations.expect(key, 0, pods.map(objectKey));
    const results = await Promise.allSettled(
      pods.map((p) =>
        this.w.delete("pods", p.metadata?.namespace, p.metadata?.name ?? "", { uid: p.metadata?.uid }),
      ),
    );
    results.forEach((r, i) => {
      // Already gone: its deletion will not be observed as an event any more.
      if (r.status === "rejected" || !this.pods.get(objectKey(pods[i]!)))
        this.expectations.deletionObserved(key, objectKey(pods[i]!));
    });
    const failed = results.find((r) => r.status === "rejected" && !isNotFound(r.reason));
    if (failed) throw (failed as PromiseRejectedResult).reason;
    await this.event(rs, "Normal", "SuccessfulDelete", `Deleted ${pods.length} pod(s)`);
  }
}
