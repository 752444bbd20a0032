import type { V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import type { ObservedContainer, ObservedPod } from "../../../node/observed.ts";
import { observedContainer } from "../../helpers/observed.ts";
import type { StatusInputs } from "../../../node/pod-status.ts";
import { computePodStatus } from "../../../node/pod-status.ts";

const now = new Date("2026-01-01T00:00:00Z");
const pod = (restartPolicy = "Always", readiness = false): V1Pod => ({
  metadata: { name: "p", namespace: "default", uid: "u1" },
  spec: {
    restartPolicy,
    containers: [
      {
        name: "app",
        image: "lab/sample",
        resources: { limits: { cpu: "1", memory: "64Mi" } },
        ...(readiness ? { readinessProbe: { tcpSocket: { port: 80 as never } } } : {}),
      },
    ],
  },
});
const ctr = (over: Partial<ObservedContainer>): ObservedContainer =>
  observedContainer({ startedAt: 2000, imageRef: "sha256:abc", ...over });
const observed = (containers: ObservedContainer[], ready = true): ObservedPod => ({
  uid: "u1",
  sandboxes: [
    {
      id: "s1",
      attempt: 0,
      state: ready ? "SANDBOX_READY" : "SANDBOX_NOTREADY",
      createdAt: 500,
      name: "p",
      namespace: "default",
      ip: "10.1.0.7",
    },
  ],
  containers,
});
const inputs = (o: ObservedPod, over: Partial<StatusInputs> = {}): StatusInputs => ({
  observed: o,
  probes: {},
  backingOff: {},
  waiting: {},
  now,
  ...over,
});
const cond = (s: ReturnType<typeof computePodStatus>, type: string): string | undefined =>
  s.conditions?.find((c) => c.type === type)?.status;

describe("computePodStatus", () => {
  it("a pod without a sandbox is Pending with its containers creating", () => {
    const s = computePodStatus(pod(), inputs({ uid: "u1", sandboxes: [], containers: [] }));
    expect(s.phase).toBe("Pending");
    expect(s.podIP).toBeUndefined();
    expect(s.containerStatuses?.[0]?.state?.waiting?.reason).toBe("ContainerCreating");
    expect(cond(s, "Ready")).toBe("False");
  });

  it("a running container makes the pod Running and Ready, with its IP, start time and QoS", () => {
    const s = computePodStatus(pod(), inputs(observed([ctr({})]), { hostIP: "192.168.1.2" }));
    expect(s.phase).toBe("Running");
    expect(s.podIP).toBe("10.1.0.7");
    expect(s.hostIP).toBe("192.168.1.2");
    expect(s.startTime).toEqual(new Date(500));
    expect(s.qosClass).toBe("Guaranteed");
    expect(cond(s, "Ready")).toBe("True");
    expect(s.containerStatuses?.[0]).toMatchObject({
      ready: true,
      restartCount: 0,
      containerID: "containerd://c0",
      imageID: "sha256:abc",
    });
  });

  it("readiness comes from the probe: not ready until it succeeds", () => {
    const o = observed([ctr({})]);
    expect(cond(computePodStatus(pod("Always", true), inputs(o)), "Ready")).toBe("False");
    expect(
      cond(
        computePodStatus(pod("Always", true), inputs(o, { probes: { c0: { ready: false } } })),
        "ContainersReady",
      ),
    ).toBe("False");
    expect(
      cond(computePodStatus(pod("Always", true), inputs(o, { probes: { c0: { ready: true } } })), "Ready"),
    ).toBe("True");
  });

  it("a crash-looping container is waiting in CrashLoopBackOff with the last run as lastState", () => {
    const o = observed([
      ctr({ state: "CONTAINER_EXITED", attempt: 4, exitCode: 3, reason: "Error", finishedAt: 9000 }),
    ]);
    const s = computePodStatus(
      pod(),
      inputs(o, { backingOff: { app: { until: 99_000, delayMs: 160_000 } } }),
    );
    const cs = s.containerStatuses![0]!;
    expect(s.phase).toBe("Running");
    expect(cs.restartCount).toBe(4);
    expect(cs.state?.waiting?.reason).toBe("CrashLoopBackOff");
    expect(cs.state?.waiting?.message).toContain("back-off 160s");
    expect(cs.lastState?.terminated).toMatchObject({
      exitCode: 3,
      reason: "Error",
      finishedAt: new Date(9000),
    });
  });

  it("an OOM-killed container under Never is terminated OOMKilled and the pod Failed", () => {
    const o = observed([
      ctr({ state: "CONTAINER_EXITED", exitCode: 137, reason: "OOMKilled", finishedAt: 3000 }),
    ]);
    const s = computePodStatus(pod("Never"), inputs(o));
    expect(s.phase).toBe("Failed");
    expect(s.containerStatuses?.[0]?.state?.terminated).toMatchObject({ exitCode: 137, reason: "OOMKilled" });
  });

  it("a completed container under OnFailure makes the pod Succeeded", () => {
    const o = observed([ctr({ state: "CONTAINER_EXITED", exitCode: 0, finishedAt: 3000 })]);
    const s = computePodStatus(pod("OnFailure"), inputs(o));
    expect(s.phase).toBe("Succeeded");
    expect(s.containerStatuses?.[0]?.state?.terminated?.reason).toBe("Completed");
  });

  it("shows the previous run as lastState of a restarted container", () => {
    const o = observed([
      ctr({ id: "c0", state: "CONTAINER_EXITED", exitCode: 1, finishedAt: 3000 }),
      ctr({ id: "c1", attempt: 1 }),
    ]);
    const cs = computePodStatus(pod(), inputs(o)).containerStatuses![0]!;
    expect(cs.restartCount).toBe(1);
    expect(cs.state?.running).toBeDefined();
    expect(cs.lastState?.terminated?.containerID).toBe("containerd://c0");
  });

  it("keeps condition transition times while the status does not change", () => {
    const o = observed([ctr({})]);
    const first = computePodStatus(pod(), inputs(o));
    const later = computePodStatus(
      pod(),
      inputs(o, { previous: first, now: new Date("2026-01-02T00:00:00Z") }),
    );
    expect(later).toEqual(first);
  });

  it("is pure: same inputs, same status", () => {
    const i = inputs(observed([ctr({})]));
    expect(computePodStatus(pod(), i)).toEqual(computePodStatus(pod(), i));
  });
});
