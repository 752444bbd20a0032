import type { V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { envRecord } from "../../../helpers/container-env.ts";
import { containerConfig, containerEnv } from "../../../../node/container-config.ts";
import type { ObservedContainer, ObservedPod } from "../../../../node/observed.ts";
import { computePodStatus } from "../../../../node/pod-status.ts";
import type { BackoffPolicy } from "../../../../node/reconcile.ts";
import { planPod } from "../../../../node/reconcile.ts";
import type { PodObjects } from "../../../../node/volumes/plan.ts";
import {
  containerMounts,
  PodConfigError,
  podVolumeSetups,
  referencedObjects,
  tokenKey,
  tokenProjections,
} from "../../../../node/volumes/plan.ts";

const objects = (): PodObjects => ({
  configMaps: new Map([
    ["cfg", { metadata: { name: "cfg" }, data: { key: "value", other: "x", "bad name": "y" } }],
  ]),
  secrets: new Map([
    ["sec", { metadata: { name: "sec" }, data: { token: Buffer.from("s3cret").toString("base64") } }],
  ]),
});

const basePod = (spec: Partial<NonNullable<V1Pod["spec"]>> = {}): V1Pod => ({
  metadata: {
    name: "p",
    namespace: "ns1",
    uid: "u1",
    labels: { app: "web", tier: "a" },
    annotations: { note: "hi" },
  },
  spec: { containers: [{ name: "app", image: "img" }], ...spec },
});

const errorOf = (fn: () => unknown): PodConfigError => {
  try {
    fn();
  } catch (err) {
    if (err instanceof PodConfigError) return err;
    throw err;
  }
  throw new Error("no error thrown");
};

describe("pod volumes (pure)", () => {
  it("collects every ConfigMap and Secret a pod refers to", () => {
    const pod = basePod({
      volumes: [
        { name: "a", configMap: { name: "cm1" } },
        { name: "b", secret: { secretName: "s1" } },
        { name: "c", projected: { sources: [{ configMap: { name: "cm2" } }, { secret: { name: "s2" } }] } },
      ],
      initContainers: [{ name: "i", envFrom: [{ configMapRef: { name: "cm3" } }] }],
      containers: [
        {
          name: "app",
          env: [{ name: "X", valueFrom: { secretKeyRef: { name: "s3", key: "k" } } }],
        },
      ],
    });
    const refs = referencedObjects(pod);
    expect([...refs.configMaps].sort()).toEqual(["cm1", "cm2", "cm3"]);
    expect([...refs.secrets].sort()).toEqual(["s1", "s2", "s3"]);
  });

  it("maps configMap items (key→path, modes), secrets (decoded), downwardAPI and emptyDir tmpfs", () => {
    const pod = basePod({
      volumes: [
        {
          name: "cfg",
          configMap: {
            name: "cfg",
            defaultMode: 0o600,
            items: [
              { key: "key", path: "sub/k.txt", mode: 0o400 },
              { key: "other", path: "o" },
            ],
          },
        },
        { name: "sec", secret: { secretName: "sec" } },
        {
          name: "info",
          downwardAPI: {
            items: [
              { path: "name", fieldRef: { fieldPath: "metadata.name" } },
              { path: "labels", fieldRef: { fieldPath: "metadata.labels" } },
            ],
          },
        },
        { name: "mem", emptyDir: { medium: "Memory", sizeLimit: "16Mi" } },
        { name: "host", hostPath: { path: "/var/data", type: "DirectoryOrCreate" } },
      ],
    });
    const { setups } = podVolumeSetups(pod, objects());
    const files = (n: string) => {
      const s = setups.find((s) => s.name === n);
      return s?.kind === "files"
        ? s.files.map((f) => [f.path, f.content.toString(), f.mode.toString(8)])
        : undefined;
    };
    expect(files("cfg")).toEqual([
      ["sub/k.txt", "value", "400"],
      ["o", "x", "600"],
    ]);
    expect(files("sec")).toEqual([["token", "s3cret", "644"]]);
    expect(files("info")).toEqual([
      ["name", "p", "644"],
      ["labels", 'app="web"\ntier="a"', "644"],
    ]);
    expect(setups.find((s) => s.name === "mem")).toEqual({
      kind: "emptyDir",
      name: "mem",
      memory: true,
      sizeBytes: 16 * 1024 * 1024,
    });
    expect(setups.find((s) => s.name === "host")).toEqual({
      kind: "hostPath",
      name: "host",
      path: "/var/data",
      type: "DirectoryOrCreate",
    });
  });

  it("fails on a missing non-optional ConfigMap, tolerates an optional one, rejects escaping paths", () => {
    const missing = basePod({ volumes: [{ name: "v", configMap: { name: "nope" } }] });
    expect(errorOf(() => podVolumeSetups(missing, objects())).message).toContain(
      'configmap "nope" not found',
    );
    const optional = basePod({ volumes: [{ name: "v", configMap: { name: "nope", optional: true } }] });
    expect(podVolumeSetups(optional, objects()).setups[0]).toMatchObject({ kind: "files", files: [] });
    const escape = basePod({
      volumes: [{ name: "v", configMap: { name: "cfg", items: [{ key: "key", path: "../x" }] } }],
    });
    expect(() => podVolumeSetups(escape, objects())).toThrow(PodConfigError);
  });

  it("projects configMap+secret+downwardAPI and reports a skipped serviceAccountToken", () => {
    const pod = basePod({
      volumes: [
        {
          name: "all",
          projected: {
            sources: [
              { configMap: { name: "cfg", items: [{ key: "key", path: "key" }] } },
              { secret: { name: "sec" } },
              { downwardAPI: { items: [{ path: "ns", fieldRef: { fieldPath: "metadata.namespace" } }] } },
              { serviceAccountToken: { path: "token-sa", expirationSeconds: 3600 } },
            ],
          },
        },
      ],
    });
    const { setups, warnings } = podVolumeSetups(pod, objects());
    const s = setups[0]!;
    expect(s.kind === "files" && s.files.map((f) => f.path)).toEqual(["key", "token", "ns"]);
    expect(warnings).toEqual([
      'projected volume "all": not supported by lab-agent, left out: serviceAccountToken (token-sa)',
    ]);
  });

  it("turns volumeMounts into CRI mounts with readOnly, subPath and subPathExpr", () => {
    const dirs = new Map([
      ["data", "/r/u1/volumes/data"],
      ["cfg", "/r/u1/volumes/cfg"],
    ]);
    const mounts = containerMounts(
      {
        name: "app",
        volumeMounts: [
          { name: "data", mountPath: "/data" },
          { name: "data", mountPath: "/logs", subPath: "logs", readOnly: true },
          { name: "cfg", mountPath: "/etc/cfg/key", subPath: "key" },
          { name: "data", mountPath: "/mine", subPathExpr: "$(POD)/x" },
        ],
      },
      dirs,
      new Map([["POD", "p"]]),
      new Set(["cfg"]),
    );
    expect(mounts.map((m) => [m.containerPath, m.hostPath, m.readonly])).toEqual([
      ["/data", "/r/u1/volumes/data", false],
      ["/logs", "/r/u1/volumes/data/logs", true],
      ["/etc/cfg/key", "/r/u1/volumes/cfg/key", true],
      ["/mine", "/r/u1/volumes/data/p/x", false],
    ]);
    expect(() =>
      containerMounts({ name: "app", volumeMounts: [{ name: "x", mountPath: "/x" }] }, dirs),
    ).toThrow(/names no volume/);
    expect(() =>
      containerMounts(
        { name: "app", volumeMounts: [{ name: "data", mountPath: "/x", subPath: "../../etc" }] },
        dirs,
      ),
    ).toThrow(PodConfigError);
  });
});

describe("container env from ConfigMaps, Secrets and the pod", () => {
  const pod = basePod({
    nodeName: "node-7",
    containers: [
      {
        name: "app",
        image: "img",
        resources: { limits: { memory: "64Mi", cpu: "1500m" } },
        envFrom: [{ configMapRef: { name: "cfg" }, prefix: "PREFIX_" }, { secretRef: { name: "sec" } }],
        env: [
          { name: "PREFIX_key", value: "overridden" },
          { name: "FROM_CM", valueFrom: { configMapKeyRef: { name: "cfg", key: "other" } } },
          { name: "FROM_SECRET", valueFrom: { secretKeyRef: { name: "sec", key: "token" } } },
          { name: "MAYBE", valueFrom: { configMapKeyRef: { name: "gone", key: "k", optional: true } } },
          { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
          { name: "POD_UID", valueFrom: { fieldRef: { fieldPath: "metadata.uid" } } },
          { name: "NODE", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
          { name: "IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
          { name: "HOST_IP", valueFrom: { fieldRef: { fieldPath: "status.hostIP" } } },
          { name: "MEM", valueFrom: { resourceFieldRef: { resource: "limits.memory" } } },
          { name: "MEM_MI", valueFrom: { resourceFieldRef: { resource: "limits.memory", divisor: "1Mi" } } },
          { name: "CPU", valueFrom: { resourceFieldRef: { resource: "limits.cpu" } } },
        ],
      },
    ],
  });

  it("applies envFrom with prefix first, then env (which wins); invalid names are left out", () => {
    const env = envRecord(
      containerEnv(
        pod,
        pod.spec!.containers[0]!,
        [],
        { podIP: "10.1.0.9", hostIP: "192.168.1.2" },
        objects(),
      ),
    );
    expect(env).toEqual({
      PREFIX_key: "overridden",
      PREFIX_other: "x",
      token: "s3cret",
      FROM_CM: "x",
      FROM_SECRET: "s3cret",
      POD_NAME: "p",
      POD_UID: "u1",
      NODE: "node-7",
      IP: "10.1.0.9",
      HOST_IP: "192.168.1.2",
      MEM: String(64 * 1024 * 1024),
      MEM_MI: "64",
      CPU: "2",
    });
  });

  it("a missing non-optional ConfigMap, Secret or key is a CreateContainerConfigError", () => {
    const c = (extra: object) => ({ name: "app", image: "img", ...extra });
    const e1 = errorOf(() =>
      containerEnv(pod, c({ envFrom: [{ configMapRef: { name: "nope" } }] }), [], {}, objects()),
    );
    expect([e1.reason, e1.message]).toEqual(["CreateContainerConfigError", 'configmap "nope" not found']);
    const e2 = errorOf(() =>
      containerEnv(
        pod,
        c({ env: [{ name: "X", valueFrom: { secretKeyRef: { name: "sec", key: "no" } } }] }),
        [],
        {},
        objects(),
      ),
    );
    expect(e2.message).toBe("couldn't find key no in Secret ns1/sec");
    expect(
      containerEnv(pod, c({ envFrom: [{ secretRef: { name: "nope", optional: true } }] }), [], {}, objects()),
    ).toEqual([]);
  });

  it("puts the mounts into the CRI container config", () => {
    const p = basePod({
      volumes: [{ name: "data", emptyDir: {} }],
      containers: [{ name: "app", image: "img", volumeMounts: [{ name: "data", mountPath: "/data" }] }],
    });
    const cfg = containerConfig(p, p.spec!.containers[0]!, 0, [], {}, objects(), {
      dirs: new Map([["data", "/v/data"]]),
    });
    expect(cfg.mounts).toEqual([
      { containerPath: "/data", hostPath: "/v/data", readonly: false, propagation: "PROPAGATION_PRIVATE" },
    ]);
  });
});

describe("init containers", () => {
  const B: BackoffPolicy = { initialMs: 10_000, maxMs: 300_000, resetAfterMs: 600_000 };
  const pod = (restartPolicy = "Always"): V1Pod =>
    basePod({
      restartPolicy,
      initContainers: [
        { name: "init-a", image: "img" },
        { name: "init-b", image: "img" },
      ],
    });
  const sandbox = {
    id: "s1",
    attempt: 0,
    state: "SANDBOX_READY" as const,
    createdAt: 1,
    name: "p",
    namespace: "ns1",
  };
  const ctr = (name: string, over: Partial<ObservedContainer> = {}): ObservedContainer => ({
    id: `${name}-0`,
    sandboxId: "s1",
    name,
    attempt: 0,
    state: "CONTAINER_EXITED",
    createdAt: 1000,
    startedAt: 1100,
    finishedAt: 2000,
    exitCode: 0,
    reason: "",
    message: "",
    image: "img",
    imageRef: "sha256:x",
    ...over,
  });
  const obs = (...containers: ObservedContainer[]): ObservedPod => ({
    uid: "u1",
    sandboxes: [sandbox],
    containers,
  });
  const status = (p: V1Pod, o: ObservedPod) =>
    computePodStatus(p, { observed: o, probes: {}, backingOff: {}, waiting: {}, now: new Date(0) });

  it("runs init containers one by one, in order, before any app container", () => {
    expect(planPod(pod(), obs(), 0, B).actions).toEqual([
      { kind: "createContainer", name: "init-a", attempt: 0, sandboxId: "s1" },
    ]);
    expect(planPod(pod(), obs(ctr("init-a", { state: "CONTAINER_RUNNING" })), 0, B).actions).toEqual([]);
    expect(planPod(pod(), obs(ctr("init-a")), 0, B).actions).toEqual([
      { kind: "createContainer", name: "init-b", attempt: 0, sandboxId: "s1" },
    ]);
    expect(planPod(pod(), obs(ctr("init-a"), ctr("init-b")), 0, B).actions).toEqual([
      { kind: "createContainer", name: "app", attempt: 0, sandboxId: "s1" },
    ]);
  });

  it("retries a failing init container with back-off, unless restartPolicy is Never (pod Failed)", () => {
    const failed = obs(ctr("init-a", { exitCode: 1 }));
    expect(planPod(pod("Always"), failed, 2000 + 10_000, B).actions).toEqual([
      { kind: "createContainer", name: "init-a", attempt: 1, sandboxId: "s1" },
    ]);
    expect(planPod(pod("OnFailure"), failed, 2500, B).backingOff["init-a"]).toBeDefined();
    expect(planPod(pod("Never"), failed, 99_000, B).actions).toEqual([]);
    expect(status(pod("Never"), failed).phase).toBe("Failed");
  });

  it("reports initContainerStatuses, Initialized=False and app containers PodInitializing", () => {
    const s = status(pod(), obs(ctr("init-a"), ctr("init-b", { state: "CONTAINER_RUNNING" })));
    expect(s.phase).toBe("Pending");
    expect(s.conditions?.find((c) => c.type === "Initialized")).toMatchObject({
      status: "False",
      reason: "ContainersNotInitialized",
    });
    expect(s.initContainerStatuses?.map((c) => Object.keys(c.state ?? {})[0])).toEqual([
      "terminated",
      "running",
    ]);
    expect(s.initContainerStatuses?.[0]?.state?.terminated?.reason).toBe("Completed");
    expect(s.containerStatuses?.[0]?.state?.waiting?.reason).toBe("PodInitializing");
    // before the first init container exists, all wait as PodInitializing (kubectl: Init:0/2)
    expect(status(pod(), obs()).initContainerStatuses?.map((c) => c.state?.waiting?.reason)).toEqual([
      "PodInitializing",
      "PodInitializing",
    ]);
    const done = status(pod(), obs(ctr("init-a"), ctr("init-b"), ctr("app", { state: "CONTAINER_RUNNING" })));
    expect(done.phase).toBe("Running");
    expect(done.conditions?.find((c) => c.type === "Initialized")?.status).toBe("True");
  });
});

describe("projected serviceAccountToken sources", () => {
  const tokenPod = (): V1Pod =>
    basePod({
      volumes: [
        {
          name: "kube-api-access",
          projected: {
            defaultMode: 0o644,
            sources: [
              { serviceAccountToken: { path: "token", expirationSeconds: 3607 } },
              {
                downwardAPI: {
                  items: [{ path: "namespace", fieldRef: { fieldPath: "metadata.namespace" } }],
                },
              },
            ],
          },
        },
      ],
    });

  it("writes the token fetched for the source, keyed by audience and lifetime", () => {
    const withToken: PodObjects = {
      ...objects(),
      tokens: new Map([[tokenKey({ path: "x", expirationSeconds: 3607 }), "jwt.a.b"]]),
    };
    const { setups, warnings } = podVolumeSetups(tokenPod(), withToken);
    const s = setups[0]!;
    expect(warnings).toEqual([]);
    expect(s.kind === "files" && s.files.map((f) => [f.path, f.content.toString(), f.mode])).toEqual([
      ["token", "jwt.a.b", 0o644],
      ["namespace", "ns1", 0o644],
    ]);
    expect(tokenProjections(tokenPod())).toEqual([{ path: "token", expirationSeconds: 3607 }]);
  });

  it("waits with the kubelet's failed-to-fetch message when the token could not be had", () => {
    const failed: PodObjects = {
      ...objects(),
      tokens: new Map(),
      tokenErrors: new Map([["|3607", 'serviceaccounts "default" not found']]),
    };
    expect(() => podVolumeSetups(tokenPod(), failed)).toThrow(
      'MountVolume.SetUp failed for volume "kube-api-access" : failed to fetch token: serviceaccounts "default" not found',
    );
  });
});
