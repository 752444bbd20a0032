/**
 * The pure part of pod sync: given a pod's desired spec (or its absence) and what CRI reports,
 * the next actions. Every decision is derived from CRI state (attempt numbers, exit codes,
 * finish times), so an agent restarted at any point takes the same decisions and never starts a
 * container twice.
 */
import type { V1Container, V1Pod } from "@kubernetes/client-node";
import { gracePeriodSeconds } from "./container-config.ts";
import type { ObservedContainer, ObservedPod } from "./observed.ts";
import { attemptsOf, currentSandbox } from "./observed.ts";

export type PodAction =
  | { kind: "runSandbox"; attempt: number }
  | { kind: "createContainer"; name: string; attempt: number; sandboxId: string }
  | { kind: "startCreated"; id: string }
  | { kind: "stopContainer"; id: string; graceSeconds: number }
  | { kind: "removeContainer"; id: string }
  | { kind: "stopSandbox"; id: string }
  | { kind: "removeSandbox"; id: string }
  | { kind: "removePodCgroup"; uid: string }
  | { kind: "removePodVolumes"; uid: string };

export interface BackoffPolicy {
  /** Delay before the first restart; doubles per restart (kubelet: 10 s). */
  initialMs: number;
  /** Cap (kubelet: 300 s). */
  maxMs: number;
  /** A container that ran this long restarts without delay and resets the back-off (kubelet: 10 min). */
  resetAfterMs: number;
}

export const KUBELET_BACKOFF: BackoffPolicy = { initialMs: 10_000, maxMs: 300_000, resetAfterMs: 600_000 };

export interface PodPlan {
  actions: PodAction[];
  /** When a container in back-off becomes due: the agent syncs again then. */
  nextSyncAt?: number;
  /** Per container name: why it is waiting, for status (CrashLoopBackOff with its message). */
  backingOff: Record<string, { until: number; delayMs: number }>;
}

export function shouldRestart(pod: V1Pod, exitCode: number): boolean {
  const policy = pod.spec?.restartPolicy ?? "Always";
  return policy === "Always" || (policy === "OnFailure" && exitCode !== 0);
}

/** Delay before restarting a container whose latest run is `latest` (attempt n = n restarts so far). */
export function restartDelayMs(latest: ObservedContainer, policy: BackoffPolicy): number {
  if (latest.startedAt > 0 && latest.finishedAt - latest.startedAt >= policy.resetAfterMs) return 0;
  return Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(latest.attempt, 30));
}

/** Everything of a pod torn down: containers stopped with grace, sandboxes stopped and removed, cgroup gone. */
export function planTeardown(observed: ObservedPod, graceSeconds?: number): PodAction[] {
  const actions: PodAction[] = [];
  for (const c of observed.containers) {
    if (c.state === "CONTAINER_RUNNING" || c.state === "CONTAINER_UNKNOWN") {
      actions.push({ kind: "stopContainer", id: c.id, graceSeconds: graceSeconds ?? c.graceSeconds ?? 30 });
    }
  }
  for (const c of observed.containers) actions.push({ kind: "removeContainer", id: c.id });
  for (const s of observed.sandboxes) actions.push({ kind: "stopSandbox", id: s.id });
  for (const s of observed.sandboxes) actions.push({ kind: "removeSandbox", id: s.id });
  actions.push({ kind: "removePodCgroup", uid: observed.uid });
  actions.push({ kind: "removePodVolumes", uid: observed.uid });
  return actions;
}

/** An init container runs again only after a failure, and never under restartPolicy Never. */
export function shouldRestartInit(pod: V1Pod, exitCode: number): boolean {
  return exitCode !== 0 && (pod.spec?.restartPolicy ?? "Always") !== "Never";
}

export interface InitProgress {
  /** Every init container exited 0 (or the app containers already started once). */
  done: boolean;
  /** An init container failed for good (restartPolicy Never): the pod has failed. */
  failed: boolean;
  /** Init containers completed so far (kubectl's Init:N/M). */
  completed: number;
}

/**
 * Where the pod's init containers stand in `sandboxId`. Once any app container exists they count
 * as done: like the kubelet, init containers are not run again while the sandbox lives.
 */
export function initProgress(pod: V1Pod, observed: ObservedPod, sandboxId: string): InitProgress {
  const inits = pod.spec?.initContainers ?? [];
  const appStarted = (pod.spec?.containers ?? []).some((c) => attemptsOf(observed, sandboxId, c.name).length);
  if (appStarted) return { done: true, failed: false, completed: inits.length };
  let completed = 0;
  for (const c of inits) {
    const latest = attemptsOf(observed, sandboxId, c.name)[0];
    if (latest?.state !== "CONTAINER_EXITED") break;
    if (latest.exitCode !== 0)
      return { done: false, failed: !shouldRestartInit(pod, latest.exitCode), completed };
    completed++;
  }
  return { done: completed === inits.length, failed: false, completed };
}

/** True when no container will run again: every one exited and the policy restarts none. */
export function podFinished(pod: V1Pod, observed: ObservedPod): boolean {
  const sandbox = currentSandbox(observed);
  if (!sandbox) return false;
  if (initProgress(pod, observed, sandbox.id).failed) return true;
  return (pod.spec?.containers ?? []).every((c) => {
    const latest = attemptsOf(observed, sandbox.id, c.name)[0];
    return latest?.state === "CONTAINER_EXITED" && !shouldRestart(pod, latest.exitCode);
  });
}

function planContainer(
  pod: V1Pod,
  spec: V1Container,
  observed: ObservedPod,
  sandboxId: string,
  now: number,
  backoff: BackoffPolicy,
  plan: PodPlan,
  restart: (exitCode: number) => boolean = (code) => shouldRestart(pod, code),
): void {
  const attempts = attemptsOf(observed, sandboxId, spec.name);
  const latest = attempts[0];
  // keep the latest run and the one before it (lastState); older exited runs are garbage
  for (const old of attempts.slice(2)) {
    if (old.state === "CONTAINER_EXITED") plan.actions.push({ kind: "removeContainer", id: old.id });
  }
  if (!latest) {
    plan.actions.push({ kind: "createContainer", name: spec.name, attempt: 0, sandboxId });
    return;
  }
  switch (latest.state) {
    case "CONTAINER_RUNNING":
      return;
    case "CONTAINER_CREATED":
      // created but never started (e.g. the agent died in between): start it rather than make another
      plan.actions.push({ kind: "startCreated", id: latest.id });
      return;
    case "CONTAINER_UNKNOWN":
      plan.actions.push({ kind: "stopContainer", id: latest.id, graceSeconds: 0 });
      return;
    case "CONTAINER_EXITED": {
      if (!restart(latest.exitCode)) return;
      const delayMs = restartDelayMs(latest, backoff);
      const due = latest.finishedAt + delayMs;
      if (now >= due) {
        // the run before `latest` stops being lastState now: remove it first, so at most two exist
        const previous = attempts[1];
        if (previous?.state === "CONTAINER_EXITED")
          plan.actions.push({ kind: "removeContainer", id: previous.id });
        plan.actions.push({
          kind: "createContainer",
          name: spec.name,
          attempt: latest.attempt + 1,
          sandboxId,
        });
      } else {
        plan.backingOff[spec.name] = { until: due, delayMs };
        plan.nextSyncAt = Math.min(plan.nextSyncAt ?? Infinity, due);
      }
    }
  }
}

/**
 * One step towards the desired state of one pod. `pod` undefined (or being deleted) means the pod
 * must go: everything the runtime has for its UID is torn down.
 */
export function planPod(
  pod: V1Pod | undefined,
  observed: ObservedPod,
  now: number,
  backoff: BackoffPolicy,
): PodPlan {
  const plan: PodPlan = { actions: [], backingOff: {} };
  if (!pod || pod.metadata?.deletionTimestamp) {
    if (observed.sandboxes.length || observed.containers.length) {
      plan.actions = planTeardown(observed, pod ? gracePeriodSeconds(pod) : undefined);
    }
    return plan;
  }
  const ready = observed.sandboxes
    .filter((s) => s.state === "SANDBOX_READY")
    .sort((a, b) => b.attempt - a.attempt || b.createdAt - a.createdAt);
  const keep = ready[0];
  // every other sandbox (older duplicates, dead ones) goes, with its containers
  for (const s of observed.sandboxes.filter((s) => s !== keep)) {
    if (!keep && podFinished(pod, observed) && s === currentSandbox(observed)) continue;
    const containers = observed.containers.filter((c) => c.sandboxId === s.id);
    plan.actions.push(
      ...planTeardown({ uid: observed.uid, sandboxes: [s], containers }, 0).filter(
        (a) => a.kind !== "removePodCgroup" && a.kind !== "removePodVolumes",
      ),
    );
  }
  if (!keep) {
    if (podFinished(pod, observed)) return { actions: [], backingOff: {} };
    const attempt = Math.max(-1, ...observed.sandboxes.map((s) => s.attempt)) + 1;
    plan.actions.push({ kind: "runSandbox", attempt });
    return plan;
  }
  const inits = pod.spec?.initContainers ?? [];
  const names = new Set([...inits, ...(pod.spec?.containers ?? [])].map((c) => c.name));
  for (const c of observed.containers.filter((c) => c.sandboxId === keep.id && !names.has(c.name))) {
    if (c.state === "CONTAINER_RUNNING")
      plan.actions.push({ kind: "stopContainer", id: c.id, graceSeconds: gracePeriodSeconds(pod) });
    plan.actions.push({ kind: "removeContainer", id: c.id });
  }
  // init containers one at a time, in order; app containers only once all of them exited 0
  const init = initProgress(pod, observed, keep.id);
  if (!init.done) {
    if (init.failed) return plan;
    const next = inits[init.completed]!;
    planContainer(pod, next, observed, keep.id, now, backoff, plan, (code) => shouldRestartInit(pod, code));
    return plan;
  }
  for (const spec of pod.spec?.containers ?? [])
    planContainer(pod, spec, observed, keep.id, now, backoff, plan);
  return plan;
}
