/** What CRI reports about one pod, grouped by the pod UID label. Input to the pure planner and status. */
import type { ContainerStateName, SandboxStateName } from "./cri/types.ts";

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
