/** The Deployment controller loop: informers on Deployments and ReplicaSets, reconcile = rolloutStep. */
import type { V1Deployment, V1ReplicaSet } from "@kubernetes/client-node";
import type { Informer } from "../../api/informer.ts";
import { objectKey } from "../../api/informer.ts";
import type { ReconcileResult } from "../../api/workqueue.ts";
import { WorkQueue } from "../../api/workqueue.ts";
import { runOverCache } from "../../api/controller.ts";
import type { ObjectWriter } from "../loop-client.ts";
import { isAlreadyExists, isConflict, isNotFound, recordEvent } from "../loop-client.ts";
import { stableStringify } from "../../lib/stable-json.ts";
import { DESIRED_REPLICAS, MAX_REPLICAS, resolveFenceposts, rolloutStep } from "./deployment-rollout.ts";
import { controllerRef, ownerRefFor, selectorMatches } from "./labels.ts";
import { enqueueObject, onEvery } from "./enqueue.ts";
import { templatesEqualIgnoringHash } from "./pod-template.ts";

export class DeploymentController {
  readonly queue = new WorkQueue({ baseDelayMs: 50, maxDelayMs: 30_000 });

  constructor(
    private readonly deployments: Informer<V1Deployment>,
    private readonly replicaSets: Informer<V1ReplicaSet>,
    private readonly w: ObjectWriter,
    private readonly onError?: (err: unknown) => void,
  ) {
    deployments.on(enqueueObject(this.queue));
    const owner = (rs: V1ReplicaSet): void => {
      const ref = controllerRef(rs);
      if (ref?.kind === "Deployment") this.queue.add(`${rs.metadata?.namespace}/${ref.name}`);
      else if (!ref)
        for (const d of this.deployments.list(rs.metadata?.namespace))
          if (selectorMatches(d.spec?.selector, rs.metadata?.labels)) this.queue.add(objectKey(d));
    };
    replicaSets.on(onEvery(owner));
  }

  run(signal: AbortSignal, workers = 2): Promise<void> {
    return runOverCache(signal, this, this.deployments.cache, { workers, onError: this.onError });
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const d = this.deployments.get(key);
    if (!d || d.metadata?.deletionTimestamp) return;
    const ns = d.metadata?.namespace ?? "default";
    // Adopt orphaned ReplicaSets that match (e.g. after `kubectl delete deploy --cascade=orphan` and re-create).
    for (const rs of this.replicaSets.list(ns)) {
      if (controllerRef(rs) || rs.metadata?.deletionTimestamp) continue;
      if (!selectorMatches(d.spec?.selector, rs.metadata?.labels)) continue;
      const ownerReferences = [
        ...(rs.metadata?.ownerReferences ?? []),
        ownerRefFor(d, "apps/v1", "Deployment"),
      ];
      await this.write(() =>
        this.w.update("replicasets", ns, { ...rs, metadata: { ...rs.metadata, ownerReferences } }),
      );
      return { requeueAfterMs: 200 }; // continue once the cache shows the adoption
    }
    const owned = this.replicaSets
      .list(ns)
      .filter((rs) => controllerRef(rs)?.uid === d.metadata?.uid && !rs.metadata?.deletionTimestamp);
    const step = rolloutStep(d, owned, Date.now());
    const byName = new Map(owned.map((rs) => [rs.metadata?.name ?? "", rs]));
    const src = { apiVersion: "apps/v1", kind: "Deployment", ...d };
    const scalingEvent = (message: string): Promise<void> =>
      recordEvent(this.w, "deployment-controller", src, "Normal", "ScalingReplicaSet", message);

    if (step.create) {
      try {
        await this.w.create("replicasets", ns, step.create);
        await scalingEvent(
          `Scaled up replica set ${step.create.metadata?.name} to ${step.create.spec?.replicas}`,
        );
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        const name = step.create.metadata?.name ?? "";
        const existing =
          this.replicaSets.get(`${ns}/${name}`) ?? (await this.w.get<V1ReplicaSet>("replicasets", ns, name));
        const ours =
          existing &&
          controllerRef(existing)?.uid === d.metadata?.uid &&
          templatesEqualIgnoringHash(existing.spec?.template, d.spec?.template);
        // Ours: our cache lags and the watch brings it. Otherwise another template hashed to the
        // same name: count the collision, which changes the hash, and try again.
        if (!ours) {
          const collisionCount = (d.status?.collisionCount ?? 0) + 1;
          await this.write(() =>
            this.w.updateStatus("deployments", ns, { ...d, status: { ...d.status, collisionCount } }),
          );
          return { requeueAfterMs: 200 };
        }
      }
    }
    const { maxSurge } = resolveFenceposts(d);
    const desired = d.spec?.replicas ?? 1;
    for (const name of new Set([...Object.keys(step.scale), ...Object.keys(step.annotate)])) {
      const rs = byName.get(name);
      if (!rs) continue;
      const replicas = step.scale[name] ?? rs.spec?.replicas;
      const annotations = {
        ...rs.metadata?.annotations,
        ...step.annotate[name],
        ...(name in step.scale
          ? { [DESIRED_REPLICAS]: String(desired), [MAX_REPLICAS]: String(desired + maxSurge) }
          : {}),
      };
      await this.write(() =>
        this.w.update("replicasets", ns, {
          ...rs,
          metadata: { ...rs.metadata, annotations },
          spec: { ...rs.spec!, replicas },
        }),
      );
      if (name in step.scale) {
        const dir = (replicas ?? 0) > (rs.spec?.replicas ?? 0) ? "up" : "down";
        await scalingEvent(`Scaled ${dir} replica set ${name} to ${replicas}`);
      }
    }
    for (const name of step.deleteOld)
      await this.write(() =>
        this.w.delete("replicasets", ns, name, { uid: byName.get(name)?.metadata?.uid }),
      );

    let current = d;
    const annotations = { ...d.metadata?.annotations, ...step.deploymentAnnotations };
    if (stableStringify(annotations) !== stableStringify(d.metadata?.annotations ?? {})) {
      const updated = await this.write(() =>
        this.w.update("deployments", ns, { ...d, metadata: { ...d.metadata, annotations } }),
      );
      if (!updated) return; // conflict: a newer Deployment is on its way
      current = updated;
    }
    if (stableStringify(step.status) !== stableStringify(d.status ?? {}))
      await this.write(() => this.w.updateStatus("deployments", ns, { ...current, status: step.status }));
    const done = step.status.conditions?.some(
      (c) => c.type === "Progressing" && c.reason === "NewReplicaSetAvailable",
    );
    // Look again later while rolling: progress deadline and minReadySeconds pass without events.
    return done ? undefined : { requeueAfterMs: 5_000 };
  }

  /** A write whose conflict or not-found only means our cache is behind: the watch will requeue. */
  private async write<T>(f: () => Promise<T>): Promise<T | undefined> {
    try {
      return await f();
    } catch (err) {
      if (isConflict(err) || isNotFound(err)) return undefined;
      throw err;
    }
  }
}
