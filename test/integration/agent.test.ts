/**
 * lab-agent against a real containerd (in its own network namespace) with the project's own
 * pause and sample images: pods run, restart with back-off, hit their memory limit, fail
 * probes, go away without leftovers, and survive an agent restart without duplicates.
 */
import type { V1Container, V1Pod, V1PodStatus } from "@kubernetes/client-node";
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SAMPLE_IMAGE } from "../../images/oci/build.ts";
import type { AgentEvent, PodStatusSink } from "../../node/agent.ts";
import { PodAgent } from "../../node/agent.ts";
import { POD_UID } from "../../node/labels.ts";
import { StaticPods } from "../helpers/pod-source.ts";
import { until } from "../helpers/until.ts";
import type { TestNode } from "./agent-node.ts";
import { startTestNode } from "./agent-node.ts";

class RecordingSink implements PodStatusSink {
  statuses = new Map<string, V1PodStatus[]>();
  /** When each status arrived, to measure back-off from the outside. */
  at = new Map<string, number[]>();
  terminated = new Set<string>();
  async podStatus(pod: V1Pod, status: V1PodStatus): Promise<void> {
    const name = pod.metadata!.name!;
    this.statuses.set(name, [...(this.statuses.get(name) ?? []), status]);
    this.at.set(name, [...(this.at.get(name) ?? []), Date.now()]);
  }
  async podTerminated(pod: V1Pod): Promise<void> {
    this.terminated.add(pod.metadata!.name!);
  }
  latest(name: string): V1PodStatus | undefined {
    return this.statuses.get(name)?.at(-1);
  }
}

let n = 0;
function pod(name: string, containers: V1Container[], spec: Partial<V1Pod["spec"]> = {}): V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: "default", uid: `00000000-0000-4000-8000-${String(++n).padStart(12, "0")}` },
    spec: { containers, terminationGracePeriodSeconds: 2, ...spec },
  };
}

const sample = (extra: Partial<V1Container> = {}): V1Container => ({
  name: "web",
  image: SAMPLE_IMAGE,
  ports: [{ containerPort: 8080, name: "http" }],
  ...extra,
});

describe("lab-agent on containerd", () => {
  let node: TestNode;
  let agent: PodAgent;
  const sink = new RecordingSink();
  const events: AgentEvent[] = [];
  let pods: V1Pod[] = [];

  // containerd's OOM event races the exit and can be lost: a container named "lossy" is reported the
  // way containerd then reports it (reason Error, exit 137).
  const losingOomEvents = (cri: TestNode["cri"]): TestNode["cri"] =>
    new Proxy(cri, {
      get(target, prop, receiver) {
        if (prop !== "containerStatus") return Reflect.get(target, prop, receiver) as unknown;
        return async (id: string) => {
          const st = await target.containerStatus(id);
          return st.metadata.name === "lossy" && st.reason === "OOMKilled" ? { ...st, reason: "Error" } : st;
        };
      },
    });
  let source = new StaticPods();
  const services = [
    {
      metadata: { name: "my-db", namespace: "default" },
      spec: { clusterIP: "10.96.0.10", ports: [{ port: 5432, name: "pg" }] },
    },
  ];
  const newAgent = (): PodAgent =>
    new PodAgent({
      cri: losingOomEvents(node.cri),
      sink,
      pods: (source = new StaticPods()),
      services: { list: () => services },
      nodeName: "node-1",
      cgroupRoot: node.cgroupRoot,
      logRoot: node.logRoot,
      backoff: { initialMs: 500, maxMs: 5000, resetAfterMs: 600_000 },
      resyncMs: 300,
      probeSecondMs: 200,
      dns: { servers: ["10.96.0.10"], clusterDomain: "cluster.local" },
      onEvent: (e) => events.push(e),
    });
  const apply = (...p: V1Pod[]): void => {
    pods = [...pods.filter((x) => !p.some((y) => y.metadata!.uid === x.metadata!.uid)), ...p];
    source.set(pods);
  };

  beforeAll(async () => {
    node = await startTestNode();
    agent = newAgent();
    await agent.start();
  });

  afterAll(async () => {
    await agent?.stop();
    await node?.destroy();
  });

  const web = pod("web-1", [
    sample({
      resources: { limits: { cpu: "500m", memory: "64Mi" } },
      env: [{ name: "GREETING", value: "hi $(MY_DB_SERVICE_HOST)" }],
      readinessProbe: { httpGet: { path: "/", port: "http" as never }, periodSeconds: 1 },
    }),
  ]);

  it("runs a pod: the sample httpd answers with the pod name, limits and service env applied", async () => {
    apply(web);
    const st = await until("web-1 ready", () => {
      const s = sink.latest("web-1");
      return s?.conditions?.find((c) => c.type === "Ready")?.status === "True" && s;
    });
    expect(st.phase).toBe("Running");
    expect(st.podIP).toMatch(new RegExp(`^${node.podCidr.split(".").slice(0, 3).join("\\.")}\\.`));
    const body = await node.inNetns(["busybox", "wget", "-qO-", `http://${st.podIP}:8080/`]);
    expect(body.trim()).toBe("web-1");

    const cid = st.containerStatuses![0]!.containerID!.replace("containerd://", "");
    const env = (await node.cri.execSync(cid, ["env"], 5)).stdout.toString();
    expect(env).toContain("MY_DB_SERVICE_HOST=10.96.0.10");
    expect(env).toContain("MY_DB_SERVICE_PORT=5432");
    expect(env).toContain("GREETING=hi 10.96.0.10");
    const resolv = (await node.cri.execSync(cid, ["cat", "/etc/resolv.conf"], 5)).stdout.toString();
    expect(resolv).toContain("nameserver 10.96.0.10");
    expect(resolv).toContain("search default.svc.cluster.local svc.cluster.local cluster.local");
    const cg = `/sys/fs/cgroup/cpu${node.cgroupRoot}/pod${web.metadata!.uid}/${cid}`;
    expect(readFileSync(`${cg}/cpu.cfs_quota_us`, "utf8").trim()).toBe("50000");
    const mem = `/sys/fs/cgroup/memory${node.cgroupRoot}/pod${web.metadata!.uid}/${cid}`;
    expect(readFileSync(`${mem}/memory.limit_in_bytes`, "utf8").trim()).toBe(String(64 * 2 ** 20));
  });

  it("restarts a crashing container with growing back-off (CrashLoopBackOff)", async () => {
    apply(pod("crash-1", [{ name: "crash", image: SAMPLE_IMAGE, command: ["sh", "-c", "exit 3"] }]));
    const st = await until(
      "restartCount >= 3",
      () => {
        const s = sink.latest("crash-1");
        return (s?.containerStatuses?.[0]?.restartCount ?? 0) >= 3 && s;
      },
      40_000,
    );
    const cs = st.containerStatuses![0]!;
    expect(cs.lastState?.terminated?.exitCode).toBe(3);
    const waits = sink.statuses.get("crash-1")!.map((s) => s.containerStatuses?.[0]?.state?.waiting?.reason);
    expect(waits).toContain("CrashLoopBackOff");
    // back-off doubles (500, 1000, 2000 ms): the time between restarts grows
    const all = sink.statuses.get("crash-1")!;
    const times = sink.at.get("crash-1")!;
    const firstSeen = (count: number): number =>
      times[all.findIndex((s) => s.containerStatuses?.[0]?.restartCount === count)]!;
    const gap1 = firstSeen(2) - firstSeen(1);
    const gap2 = firstSeen(3) - firstSeen(2);
    expect(gap2).toBeGreaterThan(gap1 * 1.3);
    const uid = pods.find((p) => p.metadata!.name === "crash-1")!.metadata!.uid!;
    const runs = (await node.cri.listContainers({ labelSelector: { [POD_UID]: uid } })).length;
    expect(runs).toBeLessThanOrEqual(2); // older attempts are garbage-collected
  });

  it("reports a memory hog over its limit as OOMKilled", async () => {
    apply(
      pod(
        "hog-1",
        [
          {
            name: "hog",
            image: SAMPLE_IMAGE,
            command: ["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"],
            resources: { limits: { memory: "32Mi" } },
          },
        ],
        { restartPolicy: "Never" },
      ),
    );
    const st = await until("hog-1 failed", () => {
      const s = sink.latest("hog-1");
      return s?.phase === "Failed" && s;
    });
    expect(st.containerStatuses![0]!.state!.terminated!.reason).toBe("OOMKilled");
    expect(st.containerStatuses![0]!.state!.terminated!.exitCode).toBe(137);
  });

  it("reports OOMKilled from the pod cgroup's count when containerd's OOM event is lost", async () => {
    const hog = {
      image: SAMPLE_IMAGE,
      command: ["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"],
    };
    apply(
      pod("hog-2", [{ name: "lossy", ...hog, resources: { limits: { memory: "32Mi" } } }], {
        restartPolicy: "Never",
      }),
      // exit code 137 without the OOM killer (a child SIGKILLed; PID 1 cannot be; `$$$$` is `$$` after
      // Kubernetes' $(VAR) expansion): stays Error
      pod(
        "killed-1",
        [{ name: "lossy", image: SAMPLE_IMAGE, command: ["sh", "-c", "sh -c 'kill -9 $$$$'; exit $?"] }],
        {
          restartPolicy: "Never",
        },
      ),
    );
    const terminated = async (name: string) =>
      (
        await until(`${name} failed`, () => {
          const s = sink.latest(name);
          return s?.phase === "Failed" && s;
        })
      ).containerStatuses![0]!.state!.terminated!;
    expect(await terminated("hog-2")).toMatchObject({ reason: "OOMKilled", exitCode: 137 });
    expect(await terminated("killed-1")).toMatchObject({ reason: "Error", exitCode: 137 });
  });

  it("keeps a pod unready while its readiness probe fails, and restarts on liveness failure", async () => {
    apply(
      pod("probed-1", [
        sample({
          readinessProbe: { tcpSocket: { port: 9999 as never }, periodSeconds: 1, failureThreshold: 1 },
        }),
        {
          name: "sick",
          image: SAMPLE_IMAGE,
          command: ["sleep", "3600"],
          livenessProbe: {
            exec: { command: ["cat", "/tmp/healthy"] },
            periodSeconds: 1,
            failureThreshold: 2,
          },
        },
      ]),
    );
    const st = await until(
      "sick restarted by liveness",
      () => {
        const s = sink.latest("probed-1");
        return (s?.containerStatuses?.[1]?.restartCount ?? 0) >= 1 && s;
      },
      40_000,
    );
    expect(st.phase).toBe("Running");
    expect(st.containerStatuses![0]!.state!.running).toBeDefined();
    expect(st.containerStatuses![0]!.ready).toBe(false);
    expect(st.conditions!.find((c) => c.type === "Ready")!.status).toBe("False");
    expect(events.some((e) => e.kind === "unhealthy" && e.container === "sick")).toBe(true);
  });

  it("reports a missing image that must not be pulled as ErrImageNeverPull, and stays Pending", async () => {
    apply(pod("missing-1", [{ name: "app", image: "docker.io/lab/missing:1", imagePullPolicy: "Never" }]));
    const st = await until("missing-1 waiting", () => {
      const s = sink.latest("missing-1");
      return s?.containerStatuses?.[0]?.state?.waiting?.reason === "ErrImageNeverPull" && s;
    });
    expect(st.phase).toBe("Pending");
  });

  it("adopts running containers after an agent restart without starting anything twice", async () => {
    const before = (await node.cri.listContainers({ labelSelector: { [POD_UID]: web.metadata!.uid! } })).map(
      (c) => c.id,
    );
    const sandboxesBefore = (await node.cri.listPodSandbox()).length;
    await agent.stop();
    // a pod cgroup left by an agent that died mid-teardown
    const orphan = `/sys/fs/cgroup/memory${node.cgroupRoot}/podorphan`;
    mkdirSync(orphan);
    agent = newAgent();
    await agent.start(); // before it knows the pods, it must not touch anything
    expect((await node.cri.listPodSandbox()).length).toBe(sandboxesBefore);
    source.set(pods);
    await agent.sync();
    await new Promise((r) => setTimeout(r, 1000));
    const after = (await node.cri.listContainers({ labelSelector: { [POD_UID]: web.metadata!.uid! } })).map(
      (c) => c.id,
    );
    expect(after).toEqual(before);
    expect((await node.cri.listPodSandbox()).length).toBe(sandboxesBefore);
    const st = await until("web-1 ready again", () => {
      const s = sink.latest("web-1");
      return s?.conditions?.find((c) => c.type === "Ready")?.status === "True" && s;
    });
    expect(st.containerStatuses![0]!.restartCount).toBe(0);
    expect(existsSync(orphan)).toBe(false);
  });

  it("deleting a pod removes its sandbox, network namespace, containers and pod cgroup", async () => {
    const uid = web.metadata!.uid!;
    expect(existsSync(`/sys/fs/cgroup/memory${node.cgroupRoot}/pod${uid}`)).toBe(true);
    const netnsBefore = readdirSync(node.podNetnsDir);
    expect(netnsBefore.length).toBeGreaterThan(0);
    apply({
      ...web,
      metadata: { ...web.metadata, deletionTimestamp: new Date(), deletionGracePeriodSeconds: 2 },
    });
    await until("web-1 terminated", () => sink.terminated.has("web-1"), 30_000);
    expect(await node.cri.listContainers({ labelSelector: { [POD_UID]: uid } })).toEqual([]);
    expect(await node.cri.listPodSandbox({ [POD_UID]: uid })).toEqual([]);
    expect(readdirSync(node.podNetnsDir).length).toBe(netnsBefore.length - 1);
    for (const h of ["memory", "cpu", "pids", "systemd"]) {
      expect(existsSync(`/sys/fs/cgroup/${h}${node.cgroupRoot}/pod${uid}`)).toBe(false);
    }
  });

  it("stops containers with SIGTERM first, within terminationGracePeriodSeconds", async () => {
    const p = pod(
      "graceful-1",
      [
        {
          name: "app",
          image: SAMPLE_IMAGE,
          command: [
            "sh",
            "-c",
            "trap 'echo got-term; exit 0' TERM; echo started; while :; do sleep 0.1; done",
          ],
        },
      ],
      { terminationGracePeriodSeconds: 20 },
    );
    apply(p);
    await until("graceful-1 running", () => sink.latest("graceful-1")?.phase === "Running");
    const t0 = Date.now();
    apply({ ...p, metadata: { ...p.metadata, deletionTimestamp: new Date() } });
    await until("graceful-1 terminated", () => sink.terminated.has("graceful-1"), 30_000);
    // it left on SIGTERM, long before the 20 s grace period would have ended in SIGKILL
    expect(Date.now() - t0).toBeLessThan(10_000);
    const log = readFileSync(`${node.logRoot}/default_graceful-1_${p.metadata!.uid}/app/0.log`, "utf8");
    expect(log).toMatch(/stdout F got-term/);
  });

  it("tears down pods dropped from the desired set, leaving nothing behind", async () => {
    pods = [];
    source.set([]);
    await until("no sandboxes left", async () => (await node.cri.listPodSandbox()).length === 0, 30_000);
    expect(await node.cri.listContainers()).toEqual([]);
    expect(readdirSync(node.podNetnsDir)).toEqual([]);
    await until(
      "no pod cgroups left",
      () => !readdirSync(`/sys/fs/cgroup/memory${node.cgroupRoot}`).some((d) => d.startsWith("pod")),
    );
  });
});
