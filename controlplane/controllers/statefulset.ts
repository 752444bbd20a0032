/**
 * The StatefulSet controller loop (pkg/controller/statefulset): informers on StatefulSets, pods and
 * ControllerRevisions. Pods are NAME-0..NAME-(n-1) with hostname = pod name and subdomain =
 * serviceName, so the headless Service gives each one NAME-i.SERVICE.NS.svc.DOMAIN. OrderedReady
 * creates pod i only once 0..i-1 are Running and Ready and removes the highest ordinal first, one at
 * a time; Parallel creates and removes all at once. RollingUpdate replaces pods whose revision is
 * not the update revision from the highest ordinal down to the partition, one at a time; OnDelete
 * waits for the user to delete them. Each volumeClaimTemplate becomes a claim CLAIM-NAME-i in the
 * pod's volumes (the claims themselves are created once lab-server serves PersistentVolumeClaims;
 * until then the scheduler keeps the pod Pending with an event naming the missing claim).
 */
import type {
  V1ControllerRevision,
  V1PersistentVolumeClaim,
  V1Pod,
  V1PodTemplateSpec,
  V1StatefulSet,
  V1StatefulSetStatus,
} from "@kubernetes/client-node";
import type { Informer } from "../../api/informer.ts";
import { runOverCache } from "../../api/controller.ts";
import { RESOURCES } from "../../api/resources.ts";
import type { ReconcileResult } from "../../api/workqueue.ts";
import { WorkQueue } from "../../api/workqueue.ts";
import { stableStringify } from "../../lib/stable-json.ts";
import type { ObjectWriter } from "../loop-client.ts";
import { isAlreadyExists, isConflict, isNotFound, recordEvent } from "../loop-client.ts";
import {
  currentRevision,
  ownedRevisions,
  REVISION_HASH_LABEL,
  revisionTemplate,
  truncateHistory,
} from "./history.ts";
import { controllerRef, ownerRefFor } from "./labels.ts";
import { enqueueController, enqueueObject } from "./enqueue.ts";
import { isPodAvailable, isPodReady } from "./pods.ts";

const SOURCE = "statefulset-controller";
export const POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name";
export const POD_INDEX_LABEL = "apps.kubernetes.io/pod-index";

function ordinalOf(sts: V1StatefulSet, p: V1Pod): number | undefined {
  const name = p.metadata?.name ?? "";
  const prefix = `${sts.metadata?.name}-`;
  if (!name.startsWith(prefix)) return undefined;
  const rest = name.slice(prefix.length);
  return /^(0|[1-9]\d*)$/.test(rest) ? Number(rest) : undefined;
}

const terminal = (p: V1Pod): boolean => p.status?.phase === "Succeeded" || p.status?.phase === "Failed";
const runningReady = (p: V1Pod): boolean =>
  !p.metadata?.deletionTimestamp && p.status?.phase === "Running" && isPodReady(p);

export class StatefulSetController {
  readonly queue = new WorkQueue({ baseDelayMs: 50, maxDelayMs: 30_000 });

  constructor(
    private readonly sets: Informer<V1StatefulSet>,
    private readonly pods: Informer<V1Pod>,
    private readonly revisions: Informer<V1ControllerRevision>,
    private readonly w: ObjectWriter,
    private readonly onError?: (err: unknown) => void,
  ) {
    sets.on(enqueueObject(this.queue));
    pods.on(enqueueController(this.queue, "StatefulSet"));
  }

  run(signal: AbortSignal, workers = 2): Promise<void> {
    return runOverCache(signal, this, this.sets.cache, { workers, onError: this.onError });
  }

  private ref(sts: V1StatefulSet): V1StatefulSet {
    return { apiVersion: "apps/v1", kind: "StatefulSet", ...sts };
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const sts = this.sets.get(key);
    if (!sts || sts.metadata?.deletionTimestamp) return;
    const ns = sts.metadata?.namespace ?? "default";
    const uid = sts.metadata?.uid;
    const owner = { ...sts, apiVersion: "apps/v1", kind: "StatefulSet" };
    const revs = ownedRevisions(this.revisions.list(ns), uid);
    const update = await currentRevision(this.w, owner as never, revs);
    const updateName = update.metadata?.name ?? "";
    const currentName = sts.status?.currentRevision || updateName;
    const current = revs.find((r) => r.metadata?.name === currentName) ?? update;
    const replicas = sts.spec?.replicas ?? 1;
    const parallel = sts.spec?.podManagementPolicy === "Parallel";
    const onDelete = sts.spec?.updateStrategy?.type === "OnDelete";
    const partition = onDelete ? 0 : (sts.spec?.updateStrategy?.rollingUpdate?.partition ?? 0);
    const pods = new Map<number, V1Pod>();
    const condemned: V1Pod[] = [];
    for (const p of this.pods.list(ns)) {
      if (controllerRef(p)?.uid !== uid) continue;
      const i = ordinalOf(sts, p);
      if (i === undefined) continue;
      if (i < replicas) pods.set(i, p);
      else condemned.push(p);
    }
    const revisionFor = (i: number): V1ControllerRevision => (onDelete || i >= partition ? update : current);
    const revOf = (p: V1Pod): string | undefined => p.metadata?.labels?.[REVISION_HASH_LABEL];
    let requeue: number | undefined;
    // 1. Create missing pods, replace failed ones.
    for (let i = 0; i < replicas; i++) {
      const p = pods.get(i);
      if (p && terminal(p) && !p.metadata?.deletionTimestamp) {
        await this.deletePod(sts, p, "recreate");
        if (!parallel) break;
        continue;
      }
      if (!p) {
        await this.createPod(sts, i, revisionFor(i));
        if (!parallel) break;
        continue;
      }
      if (!parallel && !runningReady(p)) break; // OrderedReady: wait for this one first
    }
    // 2. Scale down: highest ordinal first (OrderedReady: one at a time, the rest ready).
    const allReady = [...Array(replicas).keys()].every((i) => pods.has(i) && runningReady(pods.get(i)!));
    const dying = condemned
      .filter((p) => !p.metadata?.deletionTimestamp)
      .sort((a, b) => ordinalOf(sts, b)! - ordinalOf(sts, a)!);
    if (dying.length) {
      if (parallel) for (const p of dying) await this.deletePod(sts, p, "scale");
      else if (allReady && !condemned.some((p) => p.metadata?.deletionTimestamp))
        await this.deletePod(sts, dying[0]!, "scale");
    }
    // 3. Rolling update: from the highest ordinal down to the partition, one pod at a time.
    if (!onDelete && allReady && condemned.length === 0) {
      for (let i = replicas - 1; i >= partition; i--) {
        const p = pods.get(i)!;
        if (revOf(p) !== updateName) {
          await this.deletePod(sts, p, "update");
          break;
        }
      }
    }
    // Status.
    const live = [...pods.values()].filter((p) => !terminal(p));
    const minReady = sts.spec?.minReadySeconds ?? 0;
    const updated = live.filter((p) => revOf(p) === updateName).length;
    const status: V1StatefulSetStatus = {
      ...(sts.status ?? {}),
      observedGeneration: sts.metadata?.generation,
      replicas: live.length + condemned.filter((p) => !terminal(p)).length,
      readyReplicas: live.filter(isPodReady).length,
      currentReplicas: live.filter((p) => revOf(p) === currentName).length,
      updatedReplicas: updated,
      availableReplicas: live.filter((p) => isPodAvailable(p, minReady, Date.now())).length,
      currentRevision: currentName,
      updateRevision: updateName,
      collisionCount: sts.status?.collisionCount ?? 0,
    };
    // Every pod at the update revision: it becomes the current one.
    if (updated === replicas && live.length === replicas && condemned.length === 0) {
      status.currentRevision = updateName;
      status.currentReplicas = updated;
    }
    if (stableStringify(sts.status ?? {}) !== stableStringify(status)) {
      try {
        await this.w.updateStatus("statefulsets", ns, { ...sts, status });
      } catch (err) {
        if (isConflict(err)) return { requeueAfterMs: 100 };
        if (!isNotFound(err)) throw err;
      }
    }
    const inUse = new Set([updateName, status.currentRevision ?? ""]);
    for (const p of live) inUse.add(revOf(p) ?? "");
    await truncateHistory(this.w, owner as never, revs, inUse);
    if (minReady > 0 && (status.availableReplicas ?? 0) < (status.readyReplicas ?? 0)) requeue = 1000;
    return requeue === undefined ? undefined : { requeueAfterMs: requeue };
  }

  private claimName(sts: V1StatefulSet, claim: V1PersistentVolumeClaim, i: number): string {
    return `${claim.metadata?.name}-${sts.metadata?.name}-${i}`;
  }

  private async createPod(sts: V1StatefulSet, i: number, rev: V1ControllerRevision): Promise<void> {
    const ns = sts.metadata?.namespace ?? "default";
    const t: V1PodTemplateSpec = revisionTemplate(rev) ?? sts.spec?.template ?? {};
    const name = `${sts.metadata?.name}-${i}`;
    const spec = structuredClone(t.spec) ?? { containers: [] };
    spec.hostname = name;
    if (sts.spec?.serviceName) spec.subdomain = sts.spec.serviceName;
    const claims = sts.spec?.volumeClaimTemplates ?? [];
    const servesClaims = RESOURCES.some((r) => r.plural === "persistentvolumeclaims");
    for (const c of claims) {
      const claimName = this.claimName(sts, c, i);
      const volumes = (spec.volumes ?? []).filter((v) => v.name !== c.metadata?.name);
      spec.volumes = [...volumes, { name: c.metadata?.name ?? "", persistentVolumeClaim: { claimName } }];
      if (!servesClaims) continue;
      try {
        await this.w.create<V1PersistentVolumeClaim>("persistentvolumeclaims", ns, {
          apiVersion: "v1",
          kind: "PersistentVolumeClaim",
          metadata: {
            name: claimName,
            namespace: ns,
            labels: { ...(sts.spec?.selector?.matchLabels ?? {}) },
          },
          spec: structuredClone(c.spec),
        });
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
      }
    }
    const pod: V1Pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        name,
        namespace: ns,
        labels: {
          ...(t.metadata?.labels ?? {}),
          [REVISION_HASH_LABEL]: rev.metadata?.name ?? "",
          [POD_NAME_LABEL]: name,
          [POD_INDEX_LABEL]: String(i),
        },
        ...(t.metadata?.annotations ? { annotations: { ...t.metadata.annotations } } : {}),
        ownerReferences: [ownerRefFor(sts, "apps/v1", "StatefulSet")],
      },
      spec,
    };
    try {
      await this.w.create<V1Pod>("pods", ns, pod);
    } catch (err) {
      if (isAlreadyExists(err)) return; // the cache lags; the pod is there
      await recordEvent(
        this.w,
        SOURCE,
        this.ref(sts),
        "Warning",
        "FailedCreate",
        `create Pod ${name} in StatefulSet ${sts.metadata?.name} failed error: ${(err as Error).message}`,
      );
      throw err;
    }
    const claimText = claims.length
      ? ` Claim${claims.length > 1 ? "s" : ""} ${claims.map((c) => this.claimName(sts, c, i)).join(", ")}`
      : "";
    await recordEvent(
      this.w,
      SOURCE,
      this.ref(sts),
      "Normal",
      "SuccessfulCreate",
      `create Pod ${name} in StatefulSet ${sts.metadata?.name} successful${claimText ? ";" + claimText : ""}`,
    );
  }

  private async deletePod(sts: V1StatefulSet, p: V1Pod, _why: string): Promise<void> {
    try {
      await this.w.delete("pods", p.metadata?.namespace, p.metadata?.name ?? "", { uid: p.metadata?.uid });
    } catch (err) {
      if (isNotFound(err) || isConflict(err)) return;
      throw err;
    }
    await recordEvent(
      this.w,
      SOURCE,
      this.ref(sts),
      "Normal",
      "SuccessfulDelete",
      `delete Pod ${p.metadata?.name} in StatefulSet ${sts.metadata?.name} successful`,
    );
  }
}
