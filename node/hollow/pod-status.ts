/**
 * What a hollow node reports for its pods, pure: every pod bound to it Running and Ready (no
 * container is started), run-to-completion pods (restartPolicy Never or OnFailure) Succeeded once
 * they have "run" long enough, pods being deleted finished off. The decision reads only the pod as
 * cached, so running it twice changes nothing.
 */
import type { V1ContainerStatus, V1Pod, V1PodCondition, V1PodStatus } from "@kubernetes/client-node";

export const HOLLOW_CONTAINER_PREFIX = "hollow://";

export type HollowAction =
  /** Nothing to write; look again after `recheckMs` when given. */
  | { kind: "none"; recheckMs?: number }
  /** The pod has a deletionTimestamp: delete it for good (grace 0, uid precondition). */
  | { kind: "finish-deletion" }
  /** Write this status; look again after `recheckMs` (run-to-completion pods). */
  | { kind: "status"; status: V1PodStatus; recheckMs?: number };

export interface HollowPodInputs {
  hostIP: string;
  /** The pod's IP from the node's CIDR (allocated by the caller). */
  podIP: string;
  now: Date;
  /** How long a run-to-completion pod runs before it is Succeeded. */
  runMs: number;
}

export function runsToCompletion(pod: V1Pod): boolean {
  const p = pod.spec?.restartPolicy;
  return p === "Never" || p === "OnFailure";
}

export function isFinished(pod: V1Pod): boolean {
  return pod.status?.phase === "Succeeded" || pod.status?.phase === "Failed";
}

const time = (v: Date | string | undefined): number | undefined =>
  v === undefined ? undefined : new Date(v).getTime();

function condition(
  type: string,
  status: boolean,
  now: Date,
  previous: V1PodCondition[] | undefined,
  reason?: string,
): V1PodCondition {
  const s = status ? "True" : "False";
  const prev = previous?.find((c) => c.type === type);
  return {
    type,
    status: s,
    ...(reason ? { reason } : {}),
    lastProbeTime: null as unknown as Date,
    lastTransitionTime: prev && prev.status === s && prev.lastTransitionTime ? prev.lastTransitionTime : now,
  };
}

function containerStatuses(pod: V1Pod, startedAt: Date, finishedAt?: Date): V1ContainerStatus[] {
  const uid = pod.metadata?.uid ?? "";
  return (pod.spec?.containers ?? []).map((c, i) => ({
    name: c.name,
    image: c.image ?? "",
    imageID: `${HOLLOW_CONTAINER_PREFIX}${c.image ?? ""}`,
    containerID: `${HOLLOW_CONTAINER_PREFIX}${uid}-${i}`,
    ready: !finishedAt,
    started: !finishedAt,
    restartCount: 0,
    state: finishedAt
      ? { terminated: { exitCode: 0, reason: "Completed", startedAt, finishedAt } }
      : { running: { startedAt } },
    lastState: {},
  }));
}

/** The status of a pod "running" on a hollow node since `startedAt`, or completed at `finishedAt`. */
export function hollowPodStatus(
  pod: V1Pod,
  i: HollowPodInputs,
  startedAt: Date,
  finishedAt?: Date,
): V1PodStatus {
  const prev = pod.status?.conditions;
  const running = !finishedAt;
  const completed = finishedAt ? "PodCompleted" : undefined;
  return {
    ...(pod.status?.qosClass ? { qosClass: pod.status.qosClass } : {}),
    phase: running ? "Running" : "Succeeded",
    hostIP: i.hostIP,
    hostIPs: [{ ip: i.hostIP }],
    podIP: i.podIP,
    podIPs: [{ ip: i.podIP }],
    startTime: startedAt,
    conditions: [
      condition("PodScheduled", true, i.now, prev),
      condition("Initialized", true, i.now, prev, completed),
      condition("ContainersReady", running, i.now, prev, completed),
      condition("Ready", running, i.now, prev, completed),
    ],
    containerStatuses: containerStatuses(pod, startedAt, finishedAt),
  };
}

/** True when `status` already says what `want` says (phase, IPs, readiness): no write needed. */
export function sameReport(status: V1PodStatus | undefined, want: V1PodStatus): boolean {
  if (!status) return false;
  const ready = (s: V1PodStatus): string | undefined => s.conditions?.find((c) => c.type === "Ready")?.status;
  const states = (s: V1PodStatus): string =>
    (s.containerStatuses ?? [])
      .map((c) => `${c.name}:${c.ready}:${Object.keys(c.state ?? {}).join()}`)
      .join();
  return (
    status.phase === want.phase &&
    status.podIP === want.podIP &&
    status.hostIP === want.hostIP &&
    ready(status) === ready(want) &&
    states(status) === states(want)
  );
}

/** The step towards what a hollow node wants for `pod` (which is bound to it). */
export function hollowDecision(pod: V1Pod, i: HollowPodInputs): HollowAction {
  if (pod.metadata?.deletionTimestamp) return { kind: "finish-deletion" };
  if (isFinished(pod)) return { kind: "none" };
  const nowMs = i.now.getTime();
  // A pod this node already reported keeps its start time (also across an agent restart).
  const reported = pod.status?.phase === "Running" ? time(pod.status.startTime) : undefined;
  const startedMs = reported ?? nowMs;
  const startedAt = new Date(startedMs);
  if (runsToCompletion(pod)) {
    const doneAt = startedMs + i.runMs;
    if (reported !== undefined && doneAt <= nowMs)
      return { kind: "status", status: hollowPodStatus(pod, i, startedAt, new Date(doneAt)) };
    const want = hollowPodStatus(pod, i, startedAt);
    const recheckMs = Math.max(0, doneAt - nowMs);
    if (sameReport(pod.status, want)) return { kind: "none", recheckMs };
    return { kind: "status", status: want, recheckMs };
  }
  const want = hollowPodStatus(pod, i, startedAt);
  return sameReport(pod.status, want) ? { kind: "none" } : { kind: "status", status: want };
}
