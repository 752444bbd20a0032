/**
 * The DaemonSet controller loop (pkg/controller/daemon): informers on DaemonSets, nodes, pods and
 * ControllerRevisions. One pod per node the template may run on (nodeSelector, required node
 * affinity, NoSchedule/NoExecute taints against the template's tolerations plus the ones upstream
 * adds), each pinned by a matchFields node affinity and placed by the scheduler. A node that joins
 * gets its pod on the node's add event. RollingUpdate replaces pods of older revisions within
 * maxUnavailable, or with maxSurge starts the new pod first and removes the old one once the new
 * one is available; OnDelete leaves old pods alone.
 */
import type {
  V1ControllerRevision,
  V1DaemonSet,
  V1DaemonSetStatus,
  V1Node,
  V1Pod,
  V1Toleration,
} from "@kubernetes/client-node";
import type { Informer } from "../../api/informer.ts";
import { objectKey } from "../../api/informer.ts";
import { runOverCache } from "../../api/controller.ts";
import type { ReconcileResult } from "../../api/workqueue.ts";
import { WorkQueue } from "../../api/workqueue.ts";
import { stableStringify } from "../../lib/stable-json.ts";
import type { ObjectWriter } from "../loop-client.ts";
import { isConflict, isNotFound } from "../loop-client.ts";
import { matchesNodeSelectorAndAffinity, untoleratedTaint } from "../scheduler/decision.ts";
import { Expectations } from "./expectations.ts";
import { createOwnedPods, deleteOwnedPods, type PodControl } from "./pod-control.ts";
import {
  currentRevision,
  ownedRevisions,
  REVISION_HASH_LABEL,
  revisionHash,
  truncateHistory,
} from "./history.ts";
import { controllerRef, ownerRefFor } from "./labels.ts";
import { generateName } from "./names.ts";
import { isPodAvailable, isPodReady } from "./pods.ts";

const SOURCE = "daemonset-controller";
export const TEMPLATE_GENERATION_LABEL = "pod-template-generation";

/** The tolerations upstream adds to every daemon pod (util.AddOrUpdateDaemonPodTolerations). */
const DAEMON_TOLERATIONS: V1Toleration[] = [
  { key: "node.kubernetes.io/not-ready", operator: "Exists", effect: "NoExecute" },
  { key: "node.kubernetes.io/unreachable", operator: "Exists", effect: "NoExecute" },
  { key: "node.kubernetes.io/disk-pressure", operator: "Exists", effect: "NoSchedule" },
  { key: "node.kubernetes.io/memory-pressure", operator: "Exists", effect: "NoSchedule" },
  { key: "node.kubernetes.io/pid-pressure", operator: "Exists", effect: "NoSchedule" },
  { key: "node.kubernetes.io/unschedulable", operator: "Exists", effect: "NoSchedule" },
];

function withDaemonTolerations(list: V1Toleration[] | undefined, hostNetwork: boolean): V1Toleration[] {
  const out = [...(list ?? [])];
  const add = [...DAEMON_TOLERATIONS];
  if (hostNetwork)
    add.push({ key: "node.kubernetes.io/network-unavailable", operator: "Exists", effect: "NoSchedule" });
  for (const t of add) if (!out.some((x) => x.key === t.key && x.effect === t.effect)) out.push(t);
  return out;
}

/** The pod the DaemonSet would run (tolerations included), for the eligibility checks. */
function templatePod(ds: V1DaemonSet): V1Pod {
  const spec = structuredClone(ds.spec?.template?.spec) ?? { containers: [] };
  spec.tolerations = withDaemonTolerations(spec.tolerations, !!spec.hostNetwork);
  return { metadata: { ...(ds.spec?.template?.metadata ?? {}) }, spec };
}

/** Whether a daemon pod belongs on `node` (nodeShouldRunDaemonPod). */
export function shouldRunOn(ds: V1DaemonSet, node: V1Node): boolean {
  const pod = templatePod(ds);
  return matchesNodeSelectorAndAffinity(pod, node) && !untoleratedTaint(pod, node);
}

/** The node a daemon pod is for: its nodeName, or its matchFields metadata.name affinity. */
function podNode(p: V1Pod): string | undefined {
  if (p.spec?.nodeName) return p.spec.nodeName;
  for (const t of p.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution
    ?.nodeSelectorTerms ?? [])
    for (const f of t.matchFields ?? [])
      if (f.key === "metadata.name" && f.operator === "In") return f.values?.[0];
  return undefined;
}

/** An int-or-percent of `total`, rounded up (GetScaledValueFromIntOrPercent). */
function scaled(v: number | string | undefined, total: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v === "number") return v;
  const m = /^(\d+)%$/.exec(v);
  return m ? Math.ceil((Number(m[1]) * total) / 100) : Number(v) || 0;
}

const active = (p: V1Pod): boolean =>
  !p.metadata?.deletionTimestamp && p.status?.phase !== "Succeeded" && p.status?.phase !== "Failed";

export class DaemonSetController {
  readonly queue = new WorkQueue({ baseDelayMs: 50, maxDelayMs: 30_000 });
  readonly expectations = new Expectations();

  constructor(
    private readonly daemonSets: Informer<V1DaemonSet>,
    private readonly nodes: Informer<V1Node>,
    private readonly pods: Informer<V1Pod>,
    private readonly revisions: Informer<V1ControllerRevision>,
    private readonly w: ObjectWriter,
    private readonly onError?: (err: unknown) => void,
  ) {
    const enqueue = (d: V1DaemonSet): void => this.queue.add(objectKey(d));
    daemonSets.on({
      add: enqueue,
      update: (_o, n) => enqueue(n),
      delete: (d) => {
        this.expectations.forget(objectKey(d));
        enqueue(d);
      },
    });
    const all = (): void => {
      for (const d of this.daemonSets.list()) enqueue(d);
    };
    nodes.on({
      add: all,
      update: (o, n) => {
        if (
          stableStringify([o.metadata?.labels, o.spec?.taints, o.spec?.unschedulable]) !==
          stableStringify([n.metadata?.labels, n.spec?.taints, n.spec?.unschedulable])
        )
          all();
      },
      delete: all,
    });
    const forPod = (p: V1Pod, ev: "add" | "update" | "delete", wasDeleting = false): void => {
      const ref = controllerRef(p);
      if (ref?.kind !== "DaemonSet") return;
      const k = `${p.metadata?.namespace}/${ref.name}`;
      if (ev === "add") this.expectations.creationObserved(k);
      if (ev === "delete" || (ev === "update" && p.metadata?.deletionTimestamp && !wasDeleting))
        this.expectations.deletionObserved(k, objectKey(p));
      this.queue.add(k);
    };
    pods.on({
      add: (p) => forPod(p, "add"),
      update: (o, p) => forPod(p, "update", !!o.metadata?.deletionTimestamp),
      delete: (p) => forPod(p, "delete"),
    });
  }

  run(signal: AbortSignal, workers = 2): Promise<void> {
    return runOverCache(signal, this, this.daemonSets.cache, { workers, onError: this.onError });
  }

  private ref(ds: V1DaemonSet): V1DaemonSet {
    return { apiVersion: "apps/v1", kind: "DaemonSet", ...ds };
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const ds = this.daemonSets.get(key);
    if (!ds || ds.metadata?.deletionTimestamp) return;
    const ns = ds.metadata?.namespace ?? "default";
    const uid = ds.metadata?.uid;
    const owner = { ...ds, apiVersion: "apps/v1", kind: "DaemonSet" };
    const revs = ownedRevisions(this.revisions.list(ns), uid);
    const cur = await currentRevision(this.w, owner as never, revs);
    const hash = revisionHash(cur);
    const pods = this.pods.list(ns).filter((p) => controllerRef(p)?.uid === uid);
    const byNode = new Map<string, V1Pod[]>();
    for (const p of pods) {
      const n = podNode(p);
      if (n) byNode.set(n, [...(byNode.get(n) ?? []), p]);
    }
    const now = Date.now();
    const minReady = ds.spec?.minReadySeconds ?? 0;
    const isNew = (p: V1Pod): boolean => p.metadata?.labels?.[REVISION_HASH_LABEL] === hash;
    const available = (p: V1Pod): boolean => active(p) && isPodAvailable(p, minReady, now);
    const create: string[] = [];
    const del: V1Pod[] = [];
    const nodeNames = new Set<string>();
    let desired = 0;
    let misscheduled = 0;
    const rolling: { node: string; old: V1Pod[]; fresh: V1Pod[] }[] = [];
    for (const node of this.nodes.list()) {
      const name = node.metadata?.name ?? "";
      nodeNames.add(name);
      const here = byNode.get(name) ?? [];
      const live = here.filter(active);
      // Failed pods go (and are replaced on the next pass).
      del.push(
        ...here.filter(
          (p) =>
            !p.metadata?.deletionTimestamp &&
            (p.status?.phase === "Failed" || p.status?.phase === "Succeeded"),
        ),
      );
      if (!shouldRunOn(ds, node)) {
        if (live.length) misscheduled++;
        del.push(...live);
        continue;
      }
      desired++;
      if (live.length === 0) {
        if (!here.some((p) => p.metadata?.deletionTimestamp)) create.push(name);
        continue;
      }
      const fresh = live.filter(isNew);
      const old = live.filter((p) => !isNew(p));
      // More than one of a revision: keep the oldest.
      const byAge = (a: V1Pod, b: V1Pod): number =>
        String(a.metadata?.creationTimestamp).localeCompare(String(b.metadata?.creationTimestamp));
      if (fresh.length > 1) del.push(...[...fresh].sort(byAge).slice(1));
      if (
        old.length > 1 ||
        (old.length && fresh.length && !(ds.spec?.updateStrategy?.type === "RollingUpdate"))
      )
        del.push(...[...old].sort(byAge).slice(fresh.length ? 0 : 1));
      else if (old.length) rolling.push({ node: name, old, fresh: fresh.slice(0, 1) });
    }
    // Pods for nodes that are gone.
    for (const [n, ps] of byNode)
      if (!nodeNames.has(n)) del.push(...ps.filter((p) => !p.metadata?.deletionTimestamp));
    const strategy = ds.spec?.updateStrategy;
    if (strategy?.type !== "OnDelete" && rolling.length) {
      const ru = strategy?.rollingUpdate;
      const surge = scaled(ru?.maxSurge as number | string | undefined, desired, 0);
      let maxUnavailable = scaled(ru?.maxUnavailable as number | string | undefined, desired, 1);
      if (surge === 0 && maxUnavailable === 0) maxUnavailable = 1;
      if (surge === 0) {
        let unavailable = create.length;
        for (const [, ps] of byNode) if (ps.filter(active).length && !ps.some(available)) unavailable++;
        for (const r of rolling) {
          const oldPod = r.old[0]!;
          if (!available(oldPod)) del.push(oldPod);
          else if (unavailable < maxUnavailable) {
            del.push(oldPod);
            unavailable++;
          }
        }
      } else {
        let surging = rolling.filter((r) => r.fresh.length).length;
        for (const r of rolling) {
          const oldPod = r.old[0]!;
          if (r.fresh.length) {
            if (available(r.fresh[0]!)) del.push(oldPod);
          } else if (!available(oldPod)) del.push(oldPod);
          else if (surging < surge) {
            create.push(r.node);
            surging++;
          }
        }
      }
    }
    if (this.expectations.satisfied(key)) {
      const delUnique = [...new Map(del.map((p) => [objectKey(p), p])).values()];
      if (delUnique.length) await this.deletePods(ds, key, delUnique);
      if (create.length) await this.createPods(ds, key, create, hash);
    }
    const live = pods.filter(active);
    const scheduledOn = (p: V1Pod): boolean => !!p.spec?.nodeName;
    const onEligible = live.filter((p) => {
      const n = this.nodes.get(podNode(p) ?? "");
      return n && shouldRunOn(ds, n);
    });
    const nodesWith = (f: (p: V1Pod) => boolean): number => new Set(onEligible.filter(f).map(podNode)).size;
    const status: V1DaemonSetStatus = {
      ...(ds.status ?? {}),
      desiredNumberScheduled: desired,
      currentNumberScheduled: nodesWith(scheduledOn),
      numberMisscheduled: misscheduled,
      numberReady: nodesWith((p) => scheduledOn(p) && isPodReady(p)),
      updatedNumberScheduled: nodesWith((p) => scheduledOn(p) && isNew(p)),
      numberAvailable: nodesWith((p) => scheduledOn(p) && available(p)),
      observedGeneration: ds.metadata?.generation,
    };
    status.numberUnavailable = Math.max(0, desired - (status.numberAvailable ?? 0));
    if (status.numberUnavailable === 0) delete status.numberUnavailable;
    if (stableStringify(ds.status ?? {}) !== stableStringify(status)) {
      try {
        await this.w.updateStatus("daemonsets", ns, { ...ds, status });
      } catch (err) {
        if (isConflict(err)) return { requeueAfterMs: 100 };
        if (!isNotFound(err)) throw err;
      }
    }
    const inUse = new Set([cur.metadata?.name ?? ""]);
    for (const r of revs)
      if (live.some((p) => p.metadata?.labels?.[REVISION_HASH_LABEL] === revisionHash(r)))
        inUse.add(r.metadata?.name ?? "");
    await truncateHistory(this.w, owner as never, revs, inUse);
    // minReadySeconds: availability changes with time alone.
    if (minReady > 0 && (status.numberAvailable ?? 0) < (status.numberReady ?? 0))
      return { requeueAfterMs: 1000 };
    return;
  }

  private async createPods(ds: V1DaemonSet, key: string, nodes: string[], hash: string): Promise<void> {
    const ns = ds.metadata?.namespace ?? "default";
    const t = ds.spec?.template;
    this.expectations.expect(key, nodes.length, []);
    const make = (node: string): V1Pod => {
      const spec = structuredClone(t?.spec) ?? { containers: [] };
      spec.tolerations = withDaemonTolerations(spec.tolerations, !!spec.hostNetwork);
      // Pinned by node affinity (as upstream since 1.12) and placed by the scheduler.
      const term = { matchFields: [{ key: "metadata.name", operator: "In", values: [node] }] };
      const affinity = spec.affinity ?? {};
      spec.affinity = {
        ...affinity,
        nodeAffinity: {
          ...(affinity.nodeAffinity ?? {}),
          requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [term] },
        },
      };
      return {
        apiVersion: "v1",
        kind: "Pod",
        metadata: {
          name: generateName(`${ds.metadata?.name}-`),
          namespace: ns,
          labels: {
            ...(t?.metadata?.labels ?? {}),
            [REVISION_HASH_LABEL]: hash,
            [TEMPLATE_GENERATION_LABEL]: String(ds.metadata?.generation ?? 1),
          },
          ...(t?.metadata?.annotations ? { annotations: { ...t.metadata.annotations } } : {}),
          ownerReferences: [ownerRefFor(ds, "apps/v1", "DaemonSet")],
        },
        spec,
      };
    };
    const pods = nodes.map(make);
    await createOwnedPods(this.control(), this.ref(ds), key, ns, pods);
  }

  private deletePods(ds: V1DaemonSet, key: string, pods: V1Pod[]): Promise<void> {
    return deleteOwnedPods(this.control(), this.ref(ds), key, pods);
  }

  private control(): PodControl {
    return { w: this.w, source: SOURCE, expectations: this.expectations, pods: this.pods };
  }
}
