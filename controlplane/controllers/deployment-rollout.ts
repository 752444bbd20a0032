/**
 * The Deployment controller's decision, pure: which ReplicaSet is new (the one whose template
 * equals the Deployment's; a new one is named by the template's hash),
 * how many replicas each ReplicaSet should have in this step (RollingUpdate within maxSurge and
 * maxUnavailable, or Recreate), revision annotations (so `kubectl rollout history/undo` work), and
 * the status `kubectl rollout status` reads. Follows kube-controller-manager's deployment/sync.go
 * and rolling.go.
 */
import type {
  V1Deployment,
  V1DeploymentCondition,
  V1DeploymentStatus,
  V1ReplicaSet,
} from "@kubernetes/client-node";
import { ownerRefFor } from "./labels.ts";
import { HASH_LABEL, podTemplateHash, templatesEqualIgnoringHash } from "./pod-template.ts";

export { HASH_LABEL, podTemplateHash };
export const REVISION = "deployment.kubernetes.io/revision";
export const REVISION_HISTORY = "deployment.kubernetes.io/revision-history";
export const DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas";
export const MAX_REPLICAS = "deployment.kubernetes.io/max-replicas";
/** Deployment annotations not copied to its ReplicaSets (nor back by `kubectl rollout undo`). */
export const ANNOTATIONS_TO_SKIP = new Set([
  "kubectl.kubernetes.io/last-applied-configuration",
  REVISION,
  REVISION_HISTORY,
  DESIRED_REPLICAS,
  MAX_REPLICAS,
  "deprecated.deployment.rollback.to",
]);
/** Longest revision-history annotation kept, as kube-controller-manager's maxRevHistoryLengthInChars. */
const MAX_REVISION_HISTORY_CHARS = 2000;

const created = (rs: V1ReplicaSet): number =>
  rs.metadata?.creationTimestamp ? new Date(rs.metadata.creationTimestamp).getTime() || 0 : 0;
const byName = (a: V1ReplicaSet, b: V1ReplicaSet): number =>
  (a.metadata?.name ?? "").localeCompare(b.metadata?.name ?? "");

/**
 * The Deployment's current ReplicaSet: the oldest owned one whose template equals the Deployment's
 * (ignoring the hash label), whatever its name, so a rollback revives the old ReplicaSet.
 */
export function findNewReplicaSet(d: V1Deployment, owned: V1ReplicaSet[]): V1ReplicaSet | undefined {
  return [...owned]
    .sort((a, b) => created(a) - created(b) || byName(a, b))
    .find((rs) => templatesEqualIgnoringHash(rs.spec?.template, d.spec?.template));
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
/** Oldest revision first (ReplicaSetsByRevision). */
const byRevision = (a: V1ReplicaSet, b: V1ReplicaSet): number =>
  revisionOf(a) - revisionOf(b) || created(a) - created(b) || byName(a, b);

/** The Deployment's own annotations that its current ReplicaSet lacks (copyDeploymentAnnotationsToReplicaSet). */
function copiedAnnotations(d: V1Deployment, rs: V1ReplicaSet | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(d.metadata?.annotations ?? {}))
    if (!ANNOTATIONS_TO_SKIP.has(k) && rs?.metadata?.annotations?.[k] !== v) out[k] = v;
  return out;
}

/**
 * The annotations that make an existing ReplicaSet the newest revision again, keeping the revisions
 * it had before in revision-history (oldest dropped beyond 2,000 characters), as Kubernetes does.
 */
export function revivedRevisionAnnotations(rs: V1ReplicaSet, revision: number): Record<string, string> {
  const had = rs.metadata?.annotations?.[REVISION];
  if (had !== undefined && !/^\d+$/.test(had)) return {}; // not ours to renumber
  if (Number(had ?? 0) >= revision) return {};
  const out: Record<string, string> = { [REVISION]: String(revision) };
  if (had === undefined) return out;
  const history = (rs.metadata?.annotations?.[REVISION_HISTORY] ?? "").split(",").filter(Boolean);
  history.push(had);
  while (history.length > 1 && history.join(",").length > MAX_REVISION_HISTORY_CHARS) history.shift();
  out[REVISION_HISTORY] = history.join(",");
  return out;
}

/** Whether the rollout has finished (DeploymentComplete): all desired pods updated and available. */
function complete(d: V1Deployment, s: V1DeploymentStatus): boolean {
  const desired = d.spec?.replicas ?? 1;
  return (
    s.updatedReplicas === desired &&
    s.replicas === desired &&
    s.availableReplicas === desired &&
    (s.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0)
  );
}

/**
 * Old ReplicaSets to delete beyond revisionHistoryLimit (cleanupDeployment): among those scaled to
 * zero and settled, the oldest revisions first; one that still has pods is skipped, not replaced.
 */
export function historyToDelete(d: V1Deployment, old: V1ReplicaSet[]): string[] {
  const limit = d.spec?.revisionHistoryLimit ?? 10;
  const cleanable = old
    .filter(
      (rs) =>
        spec(rs) === 0 &&
        !rs.metadata?.deletionTimestamp &&
        (rs.metadata?.generation ?? 0) <= (rs.status?.observedGeneration ?? 0),
    )
    .sort(byRevision);
  return cleanable
    .slice(0, Math.max(0, cleanable.length - limit))
    .filter((rs) => (rs.status?.replicas ?? 0) === 0)
    .map((rs) => rs.metadata?.name ?? "");
}

/**
 * One step of a Deployment given the ReplicaSets it owns (as last observed). Applying the step and
 * calling again with the new state converges; calling twice with the same state gives the same step.
 */
export function rolloutStep(d: V1Deployment, owned: V1ReplicaSet[], nowMs: number): RolloutStep {
  const desired = d.spec?.replicas ?? 1;
  const newRS = findNewReplicaSet(d, owned);
  const old = owned.filter((rs) => rs !== newRS).sort(byRevision);
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
    ...copiedAnnotations(d, undefined),
    [DESIRED_REPLICAS]: String(desired),
    [MAX_REPLICAS]: String(desired + maxSurge),
    [REVISION]: String(n),
  });
  const hash = podTemplateHash(d.spec?.template, d.status?.collisionCount);

  // The current ReplicaSet is always the newest revision: a rollback that made an old template
  // current again renumbers its ReplicaSet (also while paused, as kube-controller-manager does).
  let revision = maxOldRevision + 1;
  if (newRS) {
    const annotations = { ...copiedAnnotations(d, newRS), ...revivedRevisionAnnotations(newRS, revision) };
    if (Object.keys(annotations).length) step.annotate[newRS.metadata?.name ?? ""] = annotations;
    revision = Number(annotations[REVISION] ?? revisionOf(newRS));
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

  step.status = deploymentStatus(d, newRS, owned, maxUnavailable, nowMs, !!step.create);
  // Revision history is trimmed once a rollout is done (or paused), never in the middle of one.
  if (paused || (!step.create && complete(d, step.status))) step.deleteOld = historyToDelete(d, old);
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
  const rsName =
    newRS?.metadata?.name ??
    `${d.metadata?.name}-${podTemplateHash(d.spec?.template, d.status?.collisionCount)}`;
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
    ...(prev?.collisionCount !== undefined ? { collisionCount: prev.collisionCount } : {}),
  };
}
