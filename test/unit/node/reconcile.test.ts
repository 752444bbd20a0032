import type { V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import type { ObservedContainer, ObservedPod, ObservedSandbox } from "../../../node/observed.ts";
import { observedContainer } from "../../helpers/observed.ts";
import type { BackoffPolicy } from "../../../node/reconcile.ts";
import { planPod, restartDelayMs } from "../../../node/reconcile.ts";

const B: BackoffPolicy = { initialMs: 10_000, maxMs: 300_000, resetAfterMs: 600_000 };
const pod = (restartPolicy = "Always", extra: Partial<V1Pod["metadata"]> = {}): V1Pod => ({
  metadata: { name: "p", namespace: "default", uid: "u1", ...extra },
  spec: {
    restartPolicy,
    containers: [{ name: "app", image: "lab/sample" }],
    terminationGracePeriodSeconds: 7,
  },
});
const sandbox = (over: Partial<ObservedSandbox> = {}): ObservedSandbox => ({
  id: "s1",
  attempt: 0,
  state: "SANDBOX_READY",
  createdAt: 1000,
  name: "p",
  namespace: "default",
  ip: "10.0.0.5",
  ...over,
});
const ctr = observedContainer;
const obs = (sandboxes: ObservedSandbox[], containers: ObservedContainer[] = []): ObservedPod => ({
  uid: "u1",
  sandboxes,
  containers,
});

describe("planPod", () => {
  it("starts a new pod with a sandbox, then its containers", () => {
    expect(planPod(pod(), obs([]), 0, B).actions).toEqual([{ kind: "runSandbox", attempt: 0 }]);
    expect(planPod(pod(), obs([sandbox()]), 0, B).actions).toEqual([
      { kind: "createContainer", name: "app", attempt: 0, sandboxId: "s1" },
    ]);
  });

  it("leaves a running pod alone (adoption after an agent restart)", () => {
    expect(planPod(pod(), obs([sandbox()], [ctr()]), 5000, B).actions).toEqual([]);
  });

  it("restarts an exited container only after its back-off, with the next attempt number", () => {
    const exited = ctr({ state: "CONTAINER_EXITED", attempt: 2, exitCode: 1, finishedAt: 50_000 });
    const early = planPod(pod(), obs([sandbox()], [exited]), 50_000 + 39_999, B);
    expect(early.actions).toEqual([]);
    expect(early.backingOff["app"]).toEqual({ until: 90_000, delayMs: 40_000 });
    expect(early.nextSyncAt).toBe(90_000);
    expect(planPod(pod(), obs([sandbox()], [exited]), 90_000, B).actions).toEqual([
      { kind: "createContainer", name: "app", attempt: 3, sandboxId: "s1" },
    ]);
  });

  it("follows restartPolicy: Never never, OnFailure only after a failure", () => {
    const ok = ctr({ state: "CONTAINER_EXITED", exitCode: 0, finishedAt: 1 });
    const bad = ctr({ state: "CONTAINER_EXITED", exitCode: 2, finishedAt: 1 });
    const later = 10 ** 9;
    expect(planPod(pod("Never"), obs([sandbox()], [bad]), later, B).actions).toEqual([]);
    expect(planPod(pod("OnFailure"), obs([sandbox()], [ok]), later, B).actions).toEqual([]);
    expect(planPod(pod("OnFailure"), obs([sandbox()], [bad]), later, B).actions).toHaveLength(1);
    expect(planPod(pod("Always"), obs([sandbox()], [ok]), later, B).actions).toHaveLength(1);
  });

  it("starts a container that was created but never started instead of creating another", () => {
    expect(planPod(pod(), obs([sandbox()], [ctr({ state: "CONTAINER_CREATED" })]), 0, B).actions).toEqual([
      { kind: "startCreated", id: "c0" },
    ]);
  });

  it("keeps only the latest two runs of a container", () => {
    const runs = [0, 1, 2, 3].map((a) =>
      ctr({ id: `c${a}`, attempt: a, state: a === 3 ? "CONTAINER_RUNNING" : "CONTAINER_EXITED" }),
    );
    expect(planPod(pod(), obs([sandbox()], runs), 0, B).actions).toEqual([
      { kind: "removeContainer", id: "c1" },
      { kind: "removeContainer", id: "c0" },
    ]);
  });

  it("removes duplicate sandboxes, keeping the newest ready one", () => {
    const plan = planPod(
      pod(),
      obs(
        [sandbox({ id: "old", attempt: 0 }), sandbox({ id: "new", attempt: 1 })],
        [ctr({ sandboxId: "new" })],
      ),
      0,
      B,
    );
    expect(plan.actions).toEqual([
      { kind: "stopSandbox", id: "old" },
      { kind: "removeSandbox", id: "old" },
    ]);
  });

  it("replaces a dead sandbox with the next attempt", () => {
    const plan = planPod(
      pod(),
      obs([sandbox({ state: "SANDBOX_NOTREADY" })], [ctr({ state: "CONTAINER_EXITED", exitCode: 137 })]),
      0,
      B,
    );
    expect(plan.actions.at(-1)).toEqual({ kind: "runSandbox", attempt: 1 });
    expect(plan.actions).toContainEqual({ kind: "removeSandbox", id: "s1" });
  });

  it("tears down a deleted pod with its grace period, and an unknown pod entirely", () => {
    const o = obs([sandbox()], [ctr()]);
    const deleting = pod("Always", { deletionTimestamp: new Date(), deletionGracePeriodSeconds: 3 });
    expect(planPod(deleting, o, 0, B).actions).toEqual([
      { kind: "stopContainer", id: "c0", graceSeconds: 3 },
      { kind: "removeContainer", id: "c0" },
      { kind: "stopSandbox", id: "s1" },
      { kind: "removeSandbox", id: "s1" },
      { kind: "removePodCgroup", uid: "u1" },
      { kind: "removePodVolumes", uid: "u1" },
    ]);
    expect(planPod(undefined, o, 0, B).actions[0]).toEqual({
      kind: "stopContainer",
      id: "c0",
      graceSeconds: 30,
    });
    expect(planPod(undefined, obs([]), 0, B).actions).toEqual([]);
  });
});

describe("restartDelayMs", () => {
  it("doubles from the initial delay up to the cap, and resets after a long run", () => {
    const at = (attempt: number, ran = 1000): number =>
      restartDelayMs(ctr({ attempt, state: "CONTAINER_EXITED", startedAt: 1, finishedAt: 1 + ran }), B);
    expect([0, 1, 2, 3, 4, 5, 6].map((a) => at(a))).toEqual([
      10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000,
    ]);
    expect(at(6, 600_000)).toBe(0);
  });
});

describe("planPod garbage collection", () => {
  it("removes the run before the latest when restarting, so at most two runs exist", () => {
    const runs = [
      ctr({ id: "c1", attempt: 1, state: "CONTAINER_EXITED", exitCode: 1, finishedAt: 1 }),
      ctr({ id: "c0", attempt: 0, state: "CONTAINER_EXITED", exitCode: 1, finishedAt: 0 }),
    ];
    expect(planPod(pod(), obs([sandbox()], runs), 10 ** 9, B).actions).toEqual([
      { kind: "removeContainer", id: "c0" },
      { kind: "createContainer", name: "app", attempt: 2, sandboxId: "s1" },
    ]);
  });
});
