/** What CRI reports about one pod, grouped by the pod UID label. Input to the pure planner and status. */
import type { ContainerStateName, ContainerStatus, SandboxStateName } from "./cri/types.ts";

export interface ObservedSandbox {
  id: string;
  attempt: number;
  state: SandboxStateName;
  /** Milliseconds since the epoch. */
  createdAt: number;
  ip?: string;
  name: string;
  namespace: string;
  graceSeconds?: number;
}

export interface ObservedContainer {
  id: string;
  sandboxId: string;
  name: string;
  attempt: number;
  state: ContainerStateName;
  /** Milliseconds since the epoch; 0 when not set. */
  createdAt: number;
  startedAt: number;
  finishedAt: number;
  exitCode: number;
  reason: string;
  message: string;
  image: string;
  imageRef: string;
  graceSeconds?: number;
}

export interface ObservedPod {
  uid: string;
  sandboxes: ObservedSandbox[];
  containers: ObservedContainer[];
}

/** CRI timestamps are nanoseconds; status wants milliseconds. */
export const nsToMs = (ns: number): number => Math.floor(ns / 1e6);

/** The sandbox the pod currently lives in: the newest ready one, else the newest of any state. */
export function currentSandbox(o: ObservedPod): ObservedSandbox | undefined {
  const byNewest = [...o.sandboxes].sort((a, b) => b.attempt - a.attempt || b.createdAt - a.createdAt);
  return byNewest.find((s) => s.state === "SANDBOX_READY") ?? byNewest[0];
}

/** The containers with this name in a sandbox, newest attempt first. */
export function attemptsOf(o: ObservedPod, sandboxId: string, name: string): ObservedContainer[] {
  return o.containers
    .filter((c) => c.sandboxId === sandboxId && c.name === name)
    .sort((a, b) => b.attempt - a.attempt || b.createdAt - a.createdAt);
}

/**
 * Whether a container's cached CRI status still holds, given the state ListContainers shows now
 * (what kubelet's PLEG relies on): a running container's status changes only with its state; an
 * exited one's is final once containerd had time to add a late OOM reason to it.
 */
export function statusStillValid(
  known: ContainerStatus,
  listedState: ContainerStateName,
  nowMs: number,
): boolean {
  if (known.state !== listedState) return false;
  if (known.state === "CONTAINER_RUNNING") return true;
  return known.state === "CONTAINER_EXITED" && nowMs - nsToMs(known.finishedAt) > EXITED_SETTLE_MS;
}

/** After this long, containerd adds nothing more to an exited container's status. */
const EXITED_SETTLE_MS = 10_000;
