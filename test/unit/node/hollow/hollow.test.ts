import type { V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { PodIpPool, fallbackPodCidr, hollowNodeIP } from "../../../../node/hollow/addresses.ts";
import { hollowNodeNames, parseCapacity } from "../../../../node/hollow/cli.ts";
import { dueHeartbeats } from "../../../../node/hollow/hollow.ts";
import { hollowDecision, hollowPodStatus } from "../../../../node/hollow/pod-status.ts";
import {
  dialHost,
  parseListen,
  serverUrl,
  standaloneCertSpecs,
} from "../../../../controlplane/standalone.ts";

const pod = (over: Partial<V1Pod["spec"]> = {}, status?: V1Pod["status"]): V1Pod => ({
  metadata: { name: "p", namespace: "default", uid: "u1" },
  spec: { nodeName: "n1", containers: [{ name: "c", image: "img" }], ...over },
  ...(status ? { status } : {}),
});
const inputs = (nowMs: number) => ({
  hostIP: "127.1.2.3",
  podIP: "10.0.0.2",
  now: new Date(nowMs),
  runMs: 5000,
});

describe("hollow pod decisions", () => {
  it("reports a new pod Running and Ready, then has nothing to do", () => {
    const a = hollowDecision(pod(), inputs(1000));
    expect(a.kind).toBe("status");
    if (a.kind !== "status") return;
    expect(a.status.phase).toBe("Running");
    expect(a.status.podIP).toBe("10.0.0.2");
    expect(a.status.conditions?.find((c) => c.type === "Ready")?.status).toBe("True");
    expect(a.status.containerStatuses?.[0]?.state?.running).toBeDefined();
    expect(hollowDecision(pod({}, a.status), inputs(2000))).toEqual({ kind: "none" });
  });

  it("a Never pod is Succeeded runMs after it started, and is looked at again then", () => {
    const first = hollowDecision(pod({ restartPolicy: "Never" }), inputs(1000));
    expect(first).toMatchObject({ kind: "status", recheckMs: 5000 });
    if (first.kind !== "status") return;
    expect(hollowDecision(pod({ restartPolicy: "Never" }, first.status), inputs(3000))).toEqual({
      kind: "none",
      recheckMs: 3000,
    });
    const done = hollowDecision(pod({ restartPolicy: "OnFailure" }, first.status), inputs(6000));
    expect(done.kind).toBe("status");
    if (done.kind !== "status") return;
    expect(done.status.phase).toBe("Succeeded");
    expect(done.status.containerStatuses?.[0]?.state?.terminated).toMatchObject({
      exitCode: 0,
      reason: "Completed",
    });
    expect(new Date(done.status.containerStatuses![0]!.state!.terminated!.finishedAt!).getTime()).toBe(6000);
    expect(hollowDecision(pod({ restartPolicy: "Never" }, done.status), inputs(7000))).toEqual({
      kind: "none",
    });
  });

  it("a pod being deleted is finished; an Always pod never completes", () => {
    const p = { ...pod(), metadata: { ...pod().metadata, deletionTimestamp: new Date() } };
    expect(hollowDecision(p, inputs(0))).toEqual({ kind: "finish-deletion" });
    const running = hollowPodStatus(pod(), inputs(0), new Date(0));
    expect(hollowDecision(pod({ restartPolicy: "Always" }, running), inputs(10 ** 9))).toEqual({
      kind: "none",
    });
  });

  it("a pod marked not ready by the node controller is reported Ready again", () => {
    const running = hollowPodStatus(pod(), inputs(0), new Date(0));
    const cleared = {
      ...running,
      conditions: running.conditions!.map((c) => (c.type === "Ready" ? { ...c, status: "False" } : c)),
    };
    expect(hollowDecision(pod({}, cleared), inputs(1000)).kind).toBe("status");
  });
});

describe("hollow heartbeat order", () => {
  const node = (name: string, registered: boolean, lease: number, status: number, busy = false) => ({
    name,
    registered,
    busy,
    nextAt: { register: 0, lease, status },
  });

  it("most overdue leases and registrations first, then status reports, never a busy node, at most `slots`", () => {
    const nodes = [
      node("a", true, 90, 10),
      node("b", true, 50, 500),
      node("c", false, 0, 0),
      node("d", true, 10, 0, true),
      node("e", true, 200, 20),
      node("f", true, 300, 5),
    ];
    const due = dueHeartbeats(nodes, 100, 10).map((d) => `${d.node.name}:${d.kind}`);
    expect(due).toEqual(["c:register", "b:lease", "a:lease", "f:status", "e:status"]);
    expect(dueHeartbeats(nodes, 100, 2).map((d) => d.node.name)).toEqual(["c", "b"]);
    expect(dueHeartbeats(nodes, 100, 0)).toEqual([]);
  });

  it("serves every node in turn when calls are scarce (no starvation of the last nodes)", () => {
    // 100 nodes due every 10 ticks, room for only 5 calls per tick: each node must still be served
    const nodes = Array.from({ length: 100 }, (_, i) => node(`n${i}`, true, 0, 10 ** 9));
    const served = new Map<string, number>();
    for (let t = 0; t < 400; t++)
      for (const { node: n } of dueHeartbeats(nodes, t, 5)) {
        served.set(n.name, t);
        n.nextAt.lease = t + 10;
      }
    expect(served.size).toBe(100);
    expect(Math.min(...served.values())).toBeGreaterThan(370); // everyone served recently
  });
});

describe("hollow addresses", () => {
  it("hands out the lowest free IP, keeps it per pod, honours a previous IP and reuses released ones", () => {
    const pool = new PodIpPool("10.128.3.0/24");
    expect(pool.allocate("a")).toBe("10.128.3.2");
    expect(pool.allocate("b")).toBe("10.128.3.3");
    expect(pool.allocate("a")).toBe("10.128.3.2");
    expect(pool.allocate("c", "10.128.3.77")).toBe("10.128.3.77");
    expect(pool.allocate("d", "10.128.3.2")).toBe("10.128.3.4"); // taken
    pool.release("a");
    expect(pool.allocate("e")).toBe("10.128.3.2");
    const tiny = new PodIpPool("10.0.0.0/30");
    expect(tiny.allocate("x")).toBe("10.0.0.2");
    expect(tiny.allocate("y")).toBeUndefined();
  });

  it("derives a CIDR and a loopback node IP from the name, the same every time", () => {
    expect(fallbackPodCidr("h-1")).toBe(fallbackPodCidr("h-1"));
    expect(fallbackPodCidr("h-1")).toMatch(/^172\.(1[6-9]|2\d|3[01])\.\d+\.0\/24$/);
    expect(hollowNodeIP("h-1")).toMatch(/^127\.([1-9]\d*)\.\d+\.\d+$/);
    expect(hollowNodeIP("h-1")).not.toBe(hollowNodeIP("h-2"));
  });
});

describe("hollow flags", () => {
  it("parses capacity with defaults and names the bad part", () => {
    expect(parseCapacity("cpu=8,memory=32Gi,pods=110")).toEqual({ cpu: "8", memory: "32Gi", pods: "110" });
    expect(parseCapacity("pods=250")).toEqual({ cpu: "8", memory: "32Gi", pods: "250" });
    expect(() => parseCapacity("gpu=1")).toThrow('--capacity: "gpu=1" is not cpu=N, memory=Q or pods=N');
    expect(() => parseCapacity("memory=lots")).toThrow("--capacity: memory=lots is not a positive quantity");
  });

  it("names P1..PN for --hollow-count, refuses --node-name with it", () => {
    expect(hollowNodeNames({ hollowCount: "3", nodeNamePrefix: "h-" })).toEqual(["h-1", "h-2", "h-3"]);
    expect(hollowNodeNames({ nodeName: "x", nodeNamePrefix: "h-" })).toEqual(["x"]);
    expect(() => hollowNodeNames({ hollowCount: "0", nodeNamePrefix: "h-" })).toThrow("--hollow-count");
    expect(() => hollowNodeNames({ hollowCount: "2", nodeName: "x", nodeNamePrefix: "h-" })).toThrow(
      "--node-name names one node",
    );
  });
});

describe("standalone lab-server", () => {
  it("parses --listen and dials loopback for a wildcard", () => {
    expect(parseListen("127.0.0.1:6443")).toEqual({ host: "127.0.0.1", port: 6443 });
    expect(parseListen("[::1]:6443")).toEqual({ host: "::1", port: 6443 });
    expect(() => parseListen("6443")).toThrow('--listen must be HOST:PORT (e.g. 127.0.0.1:6443), got "6443"');
    expect(() => parseListen("h:99999")).toThrow("--listen must be HOST:PORT");
    expect(dialHost("0.0.0.0")).toBe("127.0.0.1");
    expect(serverUrl("::1", 6443)).toBe("https://[::1]:6443");
  });

  it("serves HOST, 127.0.0.1 and localhost; the admin is in system:masters", () => {
    const [serving, admin] = standaloneCertSpecs("192.168.1.5");
    expect(serving?.ips).toEqual(["127.0.0.1", "192.168.1.5"]);
    expect(serving?.dns).toContain("localhost");
    expect(standaloneCertSpecs("api.example")[0]?.dns).toContain("api.example");
    expect(admin).toMatchObject({ id: "admin", o: ["system:masters"], usages: ["client"] });
  });
});
