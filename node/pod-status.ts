/**
 * PodStatus as a pure function of what CRI reports, the probe results the agent holds, and the
 * previous status (only to keep condition transition times stable).
 */
import type {
  V1Container,
  V1ContainerState,
  V1ContainerStatus,
  V1Pod,
  V1PodCondition,
  V1PodStatus,
} from "@kubernetes/client-node";
import type { ObservedContainer, ObservedPod } from "./observed.ts";
import { attemptsOf, currentSandbox } from "./observed.ts";
import type { PodPlan } from "./reconcile.ts";
import { initProgress, shouldRestart, shouldRestartInit } from "./reconcile.ts";

export interface ProbeResult {
  /** Readiness probe verdict; undefined until the first result. */
  ready?: boolean;
  /** Startup probe verdict; undefined until it succeeds or fails for good. */
  started?: boolean;
}

export interface StatusInputs {
  observed: ObservedPod;
  /** Probe results by container ID: a restarted container starts with none. */
  probes: Record<string, ProbeResult>;
  /** Back-off state from the planner. */
  backingOff: PodPlan["backingOff"];
  /** Why a container could not be created (image missing, create error), by container name. */
  waiting: Record<string, { reason: string; message: string }>;
  /** Pod-level notes (volume sources left out), shown as a condition. */
  warnings?: string[];
  hostIP?: string;
  previous?: V1PodStatus;
  now: Date;
}

const CRI_PREFIX = "containerd://";

/** A pod condition (False) naming volume sources lab-agent left out, e.g. serviceAccountToken. */
export const UNSUPPORTED_VOLUMES = "lab.io/VolumesComplete";

function terminated(c: ObservedContainer): V1ContainerState {
  return {
    terminated: {
      containerID: CRI_PREFIX + c.id,
      exitCode: c.exitCode,
      reason: c.reason || (c.exitCode === 0 ? "Completed" : "Error"),
      ...(c.message ? { message: c.message } : {}),
      startedAt: new Date(c.startedAt),
      finishedAt: new Date(c.finishedAt),
    },
  };
}

function containerStatus(
  pod: V1Pod,
  spec: V1Container,
  attempts: ObservedContainer[],
  i: StatusInputs,
  restart: (exitCode: number) => boolean = (code) => shouldRestart(pod, code),
  notStarted = "ContainerCreating",
): V1ContainerStatus {
  const [latest, previous] = attempts;
  const base = { name: spec.name, image: spec.image ?? "", imageID: latest?.imageRef ?? "" };
  if (!latest) {
    const w = i.waiting[spec.name] ?? { reason: notStarted, message: "" };
    return {
      ...base,
      ready: false,
      started: false,
      restartCount: 0,
      state: { waiting: { reason: w.reason, ...(w.message ? { message: w.message } : {}) } },
      lastState: {},
    };
  }
  const restartCount = latest.attempt;
  const containerID = CRI_PREFIX + latest.id;
  const probe = i.probes[latest.id] ?? {};
  const lastRun = previous?.state === "CONTAINER_EXITED" ? terminated(previous) : {};
  /** A container of this attempt that is not running (waiting to start or restart, or ended). */
  const notRunning = (state: V1ContainerState, lastState: V1ContainerState): V1ContainerStatus => ({
    ...base,
    containerID,
    ready: false,
    started: false,
    restartCount,
    state,
    lastState,
  });
  switch (latest.state) {
    case "CONTAINER_RUNNING": {
      const started = spec.startupProbe ? probe.started === true : true;
      const ready = started && (spec.readinessProbe ? probe.ready === true : true);
      return {
        ...base,
        containerID,
        ready,
        started,
        restartCount,
        state: { running: { startedAt: new Date(latest.startedAt) } },
        lastState: lastRun,
      };
    }
    case "CONTAINER_EXITED": {
      const b = i.backingOff[spec.name];
      if (restart(latest.exitCode)) {
        const waiting = b
          ? {
              reason: "CrashLoopBackOff",
              message: `back-off ${Math.round(b.delayMs / 1000)}s restarting failed container=${spec.name} pod=${pod.metadata?.name}_${pod.metadata?.namespace}(${pod.metadata?.uid})`,
            }
          : { reason: "ContainerCreating" };
        return notRunning({ waiting }, terminated(latest));
      }
      return notRunning(terminated(latest), lastRun);
    }
    default:
      return notRunning({ waiting: { reason: "ContainerCreating" } }, lastRun);
  }
}

/** The kubelet's phase rules: pending beats running, running beats finished, Never+failure is Failed. */
export function podPhase(pod: V1Pod, statuses: V1ContainerStatus[], sandboxReady: boolean): string {
  let pending = 0;
  let running = 0;
  let failed = 0;
  for (const s of statuses) {
    // a container waiting to restart counts by how its last run ended
    const ended = s.state?.terminated ?? (s.state?.running ? undefined : s.lastState?.terminated);
    if (s.state?.running) running++;
    else if (ended) {
      if (ended.exitCode !== 0) failed++;
    } else pending++;
  }
  if (statuses.length === 0) return "Pending";
  if (pending > 0) return "Pending";
  if (running > 0) return sandboxReady ? "Running" : "Pending";
  const policy = pod.spec?.restartPolicy ?? "Always";
  if (policy === "Always") return "Running";
  if (failed > 0) return policy === "Never" ? "Failed" : "Running";
  return "Succeeded";
}

function qosClass(pod: V1Pod): string {
  const cs = pod.spec?.containers ?? [];
  const any = cs.some(
    (c) => Object.keys(c.resources?.requests ?? {}).length || Object.keys(c.resources?.limits ?? {}).length,
  );
  if (!any) return "BestEffort";
  const guaranteed = cs.every((c) => {
    const l = c.resources?.limits ?? {};
    const r = c.resources?.requests ?? {};
    return ["cpu", "memory"].every(
      (k) => l[k] !== undefined && (r[k] === undefined || String(r[k]) === String(l[k])),
    );
  });
  return guaranteed ? "Guaranteed" : "Burstable";
}

function condition(type: string, ok: boolean, i: StatusInputs, reason?: string): V1PodCondition {
  const status = ok ? "True" : "False";
  const prev = i.previous?.conditions?.find((c) => c.type === type);
  const lastTransitionTime =
    prev && prev.status === status && prev.lastTransitionTime ? prev.lastTransitionTime : i.now;
  return { type, status, lastTransitionTime, ...(reason && !ok ? { reason } : {}) };
}

export function computePodStatus(pod: V1Pod, i: StatusInputs): V1PodStatus {
  const sandbox = currentSandbox(i.observed);
  const sandboxReady = sandbox?.state === "SANDBOX_READY";
  const attempts = (name: string): ObservedContainer[] =>
    sandbox ? attemptsOf(i.observed, sandbox.id, name) : [];
  const inits = pod.spec?.initContainers ?? [];
  const init = sandbox
    ? initProgress(pod, i.observed, sandbox.id)
    : { done: inits.length === 0, failed: false, completed: 0 };
  const initStatuses = inits.map((c) =>
    containerStatus(pod, c, attempts(c.name), i, (code) => shouldRestartInit(pod, code), "PodInitializing"),
  );
  // app containers wait as PodInitializing until the last init container exited 0
  const statuses = (pod.spec?.containers ?? []).map((c) =>
    containerStatus(
      pod,
      c,
      attempts(c.name),
      i,
      undefined,
      init.done ? "ContainerCreating" : "PodInitializing",
    ),
  );
  const phase = init.failed ? "Failed" : init.done ? podPhase(pod, statuses, sandboxReady) : "Pending";
  const containersReady = statuses.length > 0 && statuses.every((s) => s.ready);
  const ready = containersReady && sandboxReady;
  const startTime = i.previous?.startTime ?? (sandbox ? new Date(sandbox.createdAt) : undefined);
  // host-network pods share the node's address
  const podIP = !sandboxReady ? undefined : pod.spec?.hostNetwork ? i.hostIP : sandbox?.ip || undefined;
  return {
    phase,
    conditions: [
      condition("PodScheduled", true, i),
      condition("Initialized", init.done, i, "ContainersNotInitialized"),
      condition("ContainersReady", containersReady, i, "ContainersNotReady"),
      condition("Ready", ready, i, "ContainersNotReady"),
      ...(i.warnings?.length
        ? [
            {
              ...condition(UNSUPPORTED_VOLUMES, false, i, "UnsupportedVolumeSource"),
              message: i.warnings.join("; "),
            },
          ]
        : []),
    ],
    ...(i.hostIP ? { hostIP: i.hostIP, hostIPs: [{ ip: i.hostIP }] } : {}),
    ...(podIP ? { podIP, podIPs: [{ ip: podIP }] } : {}),
    ...(startTime ? { startTime } : {}),
    ...(inits.length ? { initContainerStatuses: initStatuses } : {}),
    containerStatuses: statuses,
    qosClass: qosClass(pod),
  };
}
