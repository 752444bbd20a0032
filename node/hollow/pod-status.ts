/**
 * What a hollow node reports for its pods, pure: every pod bound to it Running and Ready (no
 * container is started), run-to-completion pods (restartPolicy Never or OnFailure) Succeeded once
 * they have "run" long enough, pods being deleted finished off. The decision reads only the pod as
 * cached, so running it twice changes nothing. A container whose command is `false` or a shell's
 * `exit N` "exits" with that code as a real one would: a Never pod is Failed, an OnFailure pod's
 * container restarts every run (so a failing Job behaves on hollow nodes as on real ones).
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

/** The exit code a run of the pod's first failing container simulates (0: it succeeds). */
export function simulatedExitCode(pod: V1Pod): number {
  for (const c of pod.spec?.containers ?? []) {
    const argv = [...(c.command ?? []), ...(c.args ?? [])];
    const prog = (argv[0] ?? "").split("/").pop();
    if (prog === "false") return 1;
    const shell = prog === "sh" || prog === "bash" || prog === "ash";
    const m = shell ? /^\s*exit\s+(\d+)\s*$/.exec(argv[argv.length - 1] ?? "") : null;
    if (m && Number(m[1]) !== 0) return Number(m[1]) % 256;
  }
  return 0;
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

function containerStatuses(
  pod: V1Pod,
  startedAt: Date,
  finishedAt?: Date,
  exitCode = 0,
  restarts = 0,
): V1ContainerStatus[] {
  const uid = pod.metadata?.uid ?? "";
  const reason = exitCode === 0 ? "Completed" : "Error";
  return (pod.spec?.containers ?? []).map((c, i) => ({
    name: c.name,
    image: c.image ?? "",
    imageID: `${HOLLOW_CONTAINER_PREFIX}${c.image ?? ""}`,
    containerID: `${HOLLOW_CONTAINER_PREFIX}${uid}-${i}`,
    ready: !finishedAt,
    started: !finishedAt,
    restartCount: restarts,
    state: finishedAt
      ? { terminated: { exitCode, reason, startedAt, finishedAt } }
      : { running: { startedAt } },
    lastState:
      restarts > 0 ? { terminated: { exitCode, reason: "Error", startedAt, finishedAt: startedAt } } : {},
  }));
}

/** The status of a pod "running" on a hollow node since `startedAt`, or completed at `finishedAt`. */
export function hollowPodStatus(
  pod: V1Pod,
  i: HollowPodInputs,
  startedAt: Date,
  finishedAt?: Date,
  exitCode = 0,
  restarts = 0,
): V1PodStatus {
  const prev = pod.status?.conditions;
  const running = !finishedAt;
  const completed = finishedAt ? "PodCompleted" : undefined;
  return {
    ...(pod.status?.qosClass ? { qosClass: pod.status.qosClass } : {}),
    phase: running ? "Running" : exitCode === 0 ? "Succeeded" : "Failed",
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
    containerStatuses: containerStatuses(pod, startedAt, finishedAt, exitCode, restarts),
  };
}

/** True when `status` already says what `want` says (phase, IPs, readiness): no write needed. */
export function sameReport(status: V1PodStatus | undefined, want: V1PodStatus): boolean {
  if (!status) return false;
  const ready = (s: V1PodStatus): string | undefined => s.conditions?.find((c) => c.type === "Ready")?.status;
  const states = (s: V1PodStatus): string =>
    (s.containerStatuses ?? [])
      .map((c) => `${c.name}:${c.ready}:${Object.keys(c.state ?? {}).join()}:${c.restartCount ?? 0}`)
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
    const exitCode = simulatedExitCode(pod);
    if (exitCode !== 0 && pod.spec?.restartPolicy === "OnFailure" && reported !== undefined) {
      // Restarted in place after every failed run, as a kubelet would (without its back-off).
      const restarts = Math.floor((nowMs - startedMs) / i.runMs);
      const want = hollowPodStatus(pod, i, startedAt, undefined, exitCode, restarts);
      const recheckMs = startedMs + (restarts + 1) * i.runMs - nowMs;
      if (sameReport(pod.status, want)) return { kind: "none", recheckMs };
      return { kind: "status", status: want, recheckMs };
    }
    const doneAt = startedMs + i.runMs;
    if (reported !== undefined && doneAt <= nowMs)
      return { kind: "status", status: hollowPodStatus(pod, i, startedAt, new Date(doneAt), exitCode) };
    const want = hollowPodStatus(pod, i, startedAt);
    const recheckMs = Math.max(0, doneAt - nowMs);
    if (sameReport(pod.status, want)) return { kind: "none", recheckMs };
    return { kind: "status", status: want, recheckMs };
  }
  const want = hollowPodStatus(pod, i, startedAt);
  return sameReport(pod.status, want) ? { kind: "none" } : { kind: "status", status: want };
}
