/**
 * The Deployment controller's decision, pure: which ReplicaSet is new (its pod-template hash),
 * how many replicas each ReplicaSet should have in this step (RollingUpdate within maxSurge and
 * maxUnavailable, or Recreate), revision annotations (so `kubectl rollout history/undo` work), and
 * the status `kubectl rollout status` reads. Follows kube-controller-manager's deployment/sync.go
 * and rolling.go.
 */
import type {
  V1Deployment,
  V1DeploymentCondition,
  V1DeploymentStatus,
  V1PodTemplateSpec,
  V1ReplicaSet,
} from "@kubernetes/client-node";
import { ownerRefFor } from "./labels.ts";

export const HASH_LABEL = "pod-template-hash";
export const REVISION = "deployment.kubernetes.io/revision";
export const DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas";
export const MAX_REPLICAS = "deployment.kubernetes.io/max-replicas";
export const CHANGE_CAUSE = "kubernetes.io/change-cause";

/** JSON with sorted keys, so equal templates hash equally whatever their key order. */
export function stableStringify(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(",")}]`;
  if (v && typeof v === "object" && !(v instanceof Date)) {
    const entries = Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${stableStringify(x)}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

/** The template without the hash label, as compared between a Deployment and its ReplicaSets. */
function templateIdentity(t: V1PodTemplateSpec | undefined): string {
  const labels = { ...(t?.metadata?.labels ?? {}) };
  delete labels[HASH_LABEL];
  return stableStringify({ ...t, metadata: { ...t?.metadata, labels } });
}

/** FNV-1a over the template, encoded with Kubernetes' vowel-free alphabet (e.g. "5d8f7c9b6"). */
export function podTemplateHash(t: V1PodTemplateSpec | undefined): string {
  let h = 0x811c9dc5;
  for (const ch of Buffer.from(templateIdentity(t))) {
    h ^= ch;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  const alphabet = "bcdfghjklmnpqrstvwxz2456789";
  let out = "";
  for (const digit of h.toString(10)) out += alphabet[Number(digit) * 2 + (out.length % 2)] ?? "b";
  return out;
}

/** maxSurge (rounded up) and maxUnavailable (rounded down); both 0 → maxUnavailable 1. */
export function resolveFenceposts(d: V1Deployment): { maxSurge: number; maxUnavailable: number } {
  const desired = d.spec?.replicas ?? 1;
  const ru = d.spec?.strategy?.rollingUpdate;
  const resolve = (v: unknown, def: string, roundUp: boolean): number => {
    const x = v ?? def;
    if (typeof x === "number") return x;
    const m = /^(\d+)%$/.exec(String(x));
    if (!m) return Number(x) || 0;
    const f = (Number(m[1]) * desired) / 100;
    return roundUp ? Math.ceil(f) : Math.floor(f);
  };
  const maxSurge = resolve(ru?.maxSurge, "25%", true);
  let maxUnavailable = resolve(ru?.maxUnavailable, "25%", false);
  if (maxSurge === 0 && maxUnavailable === 0) maxUnavailable = 1;
  return { maxSurge, maxUnavailable: Math.min(maxUnavailable, desired) };
}

export function revisionOf(rs: V1ReplicaSet): number {
  return Number(rs.metadata?.annotations?.[REVISION] ?? 0) || 0;
}

export interface RolloutStep {
  /** A ReplicaSet to create (the new one). */
  create?: V1ReplicaSet;
  /** Replica counts to set, by ReplicaSet name. */
  scale: Record<string, number>;
  /** Annotations to set on existing ReplicaSets (revision bump when a rollback revives an old one). */
  annotate: Record<string, Record<string, string>>;
  /** Old, empty ReplicaSets beyond revisionHistoryLimit. */
  deleteOld: string[];
  /** Annotations to set on the Deployment. */
  deploymentAnnotations: Record<string, string>;
  status: V1DeploymentStatus;
}

const spec = (rs: V1ReplicaSet): number => rs.spec?.replicas ?? 0;
const available = (rs: V1ReplicaSet): number => rs.status?.availableReplicas ?? 0;
const byAge = (a: V1ReplicaSet, b: V1ReplicaSet): number =>
  revisionOf(a) - revisionOf(b) || (a.metadata?.name ?? "").localeCompare(b.metadata?.name ?? "");

/**
 * One step of a Deployment given the ReplicaSets it owns (as last observed). Applying the step and
 * calling again with the new state converges; calling twice with the same state gives the same step.
 */
export function rolloutStep(d: V1Deployment, owned: V1ReplicaSet[], nowMs: number): RolloutStep {
  const desired = d.spec?.replicas ?? 1;
  const hash = podTemplateHash(d.spec?.template);
  const want = templateIdentity(d.spec?.template);
  const newRS = owned.find((rs) => templateIdentity(rs.spec?.template) === want);
  const old = owned.filter((rs) => rs !== newRS).sort(byAge);
  const maxOldRevision = old.reduce((m, rs) => Math.max(m, revisionOf(rs)), 0);
  const { maxSurge, maxUnavailable } = resolveFenceposts(d);
  const step: RolloutStep = { scale: {}, annotate: {}, deleteOld: [], deploymentAnnotations: {}, status: {} };
  const recreate = d.spec?.strategy?.type === "Recreate";
  const paused = !!d.spec?.paused;

  // Working copy of spec replicas after this step's decisions.
  const replicas = new Map<V1ReplicaSet, number>(owned.map((rs) => [rs, spec(rs)]));
  const setReplicas = (rs: V1ReplicaSet, n: number): void => {
    replicas.set(rs, n);
    if (n !== spec(rs)) step.scale[rs.metadata?.name ?? ""] = n;
  };
  const annotationsFor = (n: number): Record<string, string> => ({
    [DESIRED_REPLICAS]: String(desired),
    [MAX_REPLICAS]: String(desired + maxSurge),
    ...(d.metadata?.annotations?.[CHANGE_CAUSE]
      ? { [CHANGE_CAUSE]: d.metadata.annotations[CHANGE_CAUSE] }
      : {}),
    [REVISION]: String(n),
  });

  let revision = newRS ? revisionOf(newRS) : maxOldRevision + 1;
  if (newRS && revision <= maxOldRevision && !paused) {
    // A rollback made an old template current again: it becomes the newest revision.
    revision = maxOldRevision + 1;
    step.annotate[newRS.metadata?.name ?? ""] = annotationsFor(revision);
  }
  if (!paused || newRS) step.deploymentAnnotations[REVISION] = String(revision);

  const oldSpecTotal = old.reduce((s, rs) => s + (replicas.get(rs) ?? 0), 0);
  const oldPods = old.reduce((s, rs) => s + (rs.status?.replicas ?? 0), 0);

  if (!paused) {
    if (recreate) {
      for (const rs of old) if (spec(rs) > 0) setReplicas(rs, 0);
      const oldGone = oldSpecTotal === 0 && oldPods === 0;
      if (!newRS) step.create = newReplicaSet(d, hash, oldGone ? desired : 0, annotationsFor(revision));
      else if (oldGone && spec(newRS) !== desired) setReplicas(newRS, desired);
    } else {
      const total = (): number => [...replicas.values()].reduce((s, n) => s + n, 0);
      // Scale the new ReplicaSet up within the surge budget (or down to desired).
      const current = newRS ? spec(newRS) : 0;
      let target = current;
      if (current > desired) target = desired;
      else if (current < desired) {
        const room = desired + maxSurge - total();
        target = room > 0 ? current + Math.min(room, desired - current) : current;
      }
      if (newRS) setReplicas(newRS, target);
      else step.create = newReplicaSet(d, hash, target, annotationsFor(revision));
      const newSpec = target;
      const newAvailable = newRS ? available(newRS) : 0;
      // Scale old ones down without going below desired - maxUnavailable available pods.
      const minAvailable = desired - maxUnavailable;
      const allSpec = total() + (newRS ? 0 : newSpec);
      let budget = allSpec - minAvailable - Math.max(0, newSpec - newAvailable);
      if (budget > 0) {
        // First old pods that are not available anyway: removing them costs no availability.
        for (const rs of old) {
          if (budget <= 0) break;
          const unhealthy = (replicas.get(rs) ?? 0) - available(rs);
          if (unhealthy <= 0) continue;
          const n = Math.min(budget, unhealthy);
          setReplicas(rs, (replicas.get(rs) ?? 0) - n);
          budget -= n;
        }
        const availableNow =
          old.reduce((s, rs) => s + Math.min(available(rs), replicas.get(rs) ?? 0), 0) + newAvailable;
        let down = availableNow - minAvailable;
        for (const rs of old) {
          if (down <= 0) break;
          const n = Math.min(replicas.get(rs) ?? 0, down);
          if (n <= 0) continue;
          setReplicas(rs, (replicas.get(rs) ?? 0) - n);
          down -= n;
        }
      }
    }
  } else if (newRS && old.every((rs) => spec(rs) === 0) && spec(newRS) !== desired) {
    setReplicas(newRS, desired); // scaling a paused Deployment
  }

  // Revision history: keep revisionHistoryLimit empty old ReplicaSets.
  const limit = d.spec?.revisionHistoryLimit ?? 10;
  const empty = old.filter((rs) => (replicas.get(rs) ?? 0) === 0 && (rs.status?.replicas ?? 0) === 0);
  if (empty.length > limit)
    step.deleteOld = empty.slice(0, empty.length - limit).map((rs) => rs.metadata?.name ?? "");

  step.status = deploymentStatus(d, newRS, owned, maxUnavailable, nowMs, !!step.create);
  return step;
}

function newReplicaSet(
  d: V1Deployment,
  hash: string,
  replicas: number,
  annotations: Record<string, string>,
): V1ReplicaSet {
  const t = structuredClone(d.spec?.template);
  const labels = { ...(t?.metadata?.labels ?? {}), [HASH_LABEL]: hash };
  return {
    apiVersion: "apps/v1",
    kind: "ReplicaSet",
    metadata: {
      name: `${d.metadata?.name}-${hash}`,
      namespace: d.metadata?.namespace,
      labels,
      annotations,
      ownerReferences: [ownerRefFor(d, "apps/v1", "Deployment")],
    },
    spec: {
      replicas,
      minReadySeconds: d.spec?.minReadySeconds,
      selector: {
        ...d.spec?.selector,
        matchLabels: { ...(d.spec?.selector?.matchLabels ?? {}), [HASH_LABEL]: hash },
      },
      template: { ...t, metadata: { ...t?.metadata, labels } },
    },
  };
}

function condition(
  prev: V1DeploymentCondition[] | undefined,
  type: string,
  status: string,
  reason: string,
  message: string,
  now: string,
  progressed: boolean,
): V1DeploymentCondition {
  const p = prev?.find((c) => c.type === type);
  const same = p && p.status === status && p.reason === reason;
  return {
    type,
    status,
    reason,
    message,
    lastTransitionTime: (p && p.status === status ? p.lastTransitionTime : now) as Date,
    lastUpdateTime: (same && !progressed ? p.lastUpdateTime : now) as Date,
  };
}

export function deploymentStatus(
  d: V1Deployment,
  newRS: V1ReplicaSet | undefined,
  owned: V1ReplicaSet[],
  maxUnavailable: number,
  nowMs: number,
  creatingNew: boolean,
): V1DeploymentStatus {
  const desired = d.spec?.replicas ?? 1;
  const sum = (f: (rs: V1ReplicaSet) => number | undefined): number =>
    owned.reduce((s, rs) => s + (f(rs) ?? 0), 0);
  const replicas = sum((rs) => rs.status?.replicas);
  const updatedReplicas = newRS?.status?.replicas ?? 0;
  const readyReplicas = sum((rs) => rs.status?.readyReplicas);
  const availableReplicas = sum((rs) => rs.status?.availableReplicas);
  const totalSpec = sum((rs) => rs.spec?.replicas);
  const prev = d.status;
  const now = new Date(nowMs).toISOString().replace(/\.\d{3}Z$/, "Z");
  const progressed =
    prev?.replicas !== replicas ||
    prev?.updatedReplicas !== updatedReplicas ||
    prev?.readyReplicas !== readyReplicas ||
    prev?.availableReplicas !== availableReplicas;
  const rsName = newRS?.metadata?.name ?? `${d.metadata?.name}-${podTemplateHash(d.spec?.template)}`;
  const complete =
    updatedReplicas === desired && replicas === desired && availableReplicas === desired && !creatingNew;
  const availableCond = condition(
    prev?.conditions,
    "Available",
    availableReplicas >= desired - maxUnavailable ? "True" : "False",
    availableReplicas >= desired - maxUnavailable ? "MinimumReplicasAvailable" : "MinimumReplicasUnavailable",
    availableReplicas >= desired - maxUnavailable
      ? "Deployment has minimum availability."
      : "Deployment does not have minimum availability.",
    now,
    false,
  );
  let progressing: V1DeploymentCondition;
  if (complete) {
    progressing = condition(
      prev?.conditions,
      "Progressing",
      "True",
      "NewReplicaSetAvailable",
      `ReplicaSet "${rsName}" has successfully progressed.`,
      now,
      progressed,
    );
  } else {
    const prevP = prev?.conditions?.find((c) => c.type === "Progressing");
    const deadline = d.spec?.progressDeadlineSeconds ?? 600;
    const lastProgress = prevP?.lastUpdateTime ? new Date(prevP.lastUpdateTime).getTime() : nowMs;
    if (
      !progressed &&
      !creatingNew &&
      prevP &&
      prevP.reason !== "NewReplicaSetAvailable" &&
      nowMs - lastProgress > deadline * 1000
    )
      progressing = condition(
        prev?.conditions,
        "Progressing",
        "False",
        "ProgressDeadlineExceeded",
        `ReplicaSet "${rsName}" has timed out progressing.`,
        now,
        false,
      );
    else if (creatingNew)
      progressing = condition(
        prev?.conditions,
        "Progressing",
        "True",
        "NewReplicaSetCreated",
        `Created new replica set "${rsName}"`,
        now,
        true,
      );
    else
      progressing = condition(
        prev?.conditions,
        "Progressing",
        "True",
        "ReplicaSetUpdated",
        `ReplicaSet "${rsName}" is progressing.`,
        now,
        progressed,
      );
  }
  return {
    observedGeneration: d.metadata?.generation,
    replicas,
    updatedReplicas,
    readyReplicas,
    availableReplicas,
    unavailableReplicas: Math.max(0, totalSpec - availableReplicas),
    conditions: [availableCond, progressing],
  };
}
