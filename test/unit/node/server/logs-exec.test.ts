import type { V1Node, V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import {
  agentPath,
  assertLogsAvailable,
  assertPodRunning,
  assertRunning,
  nodeTarget,
} from "../../../../controlplane/node-proxy.ts";
import { formatLine, parseCriLog, parseLogQuery, selectLines } from "../../../../node/server/cri-log.ts";
import {
  chooseSubprotocol,
  exitStatus,
  frame,
  parseExecQuery,
} from "../../../../node/server/exec-protocol.ts";
import { labPlan } from "../../../helpers/lab-plan.ts";

const LOG = [
  "2026-11-27T01:00:00.000000001Z stdout F one",
  "2026-11-27T01:00:01.000000000Z stderr P par",
  "2026-11-27T01:00:01.500000000Z stderr F tial",
  "2026-11-27T01:00:02.000000000Z stdout F ",
  "2026-11-27T01:00:03.000000000Z stdout F thr",
].join("\n");

describe("CRI log files", () => {
  it("joins partial entries, keeps empty lines and holds back an unterminated record", () => {
    const { lines, rest } = parseCriLog(`${LOG}\n2026-11-27T01:00:04Z stdout F fo`);
    expect(lines.map((l) => l.text)).toEqual(["one\n", "partial\n", "\n", "thr\n"]);
    expect(rest).toBe("2026-11-27T01:00:04Z stdout F fo");
  });

  it("carries a partial line over to the next chunk when following", () => {
    const a = parseCriLog("2026-11-27T01:00:01Z stdout P ab\n");
    expect(a.lines).toEqual([]);
    const b = parseCriLog("2026-11-27T01:00:02Z stdout F cd\n", a.partial);
    expect(b.lines.map((l) => l.text)).toEqual(["abcd\n"]);
  });

  it("applies since before tail, and prefixes timestamps on request", () => {
    const { lines } = parseCriLog(`${LOG}\n`);
    expect(selectLines(lines, { timestamps: false, tailLines: 2 }).map((l) => l.text)).toEqual([
      "\n",
      "thr\n",
    ]);
    const since = Date.parse("2026-11-27T01:00:01.600Z");
    expect(selectLines(lines, { timestamps: false, sinceMs: since, tailLines: 5 })).toHaveLength(2);
    expect(selectLines(lines, { timestamps: false, tailLines: 0 })).toEqual([]);
    expect(formatLine(lines[0]!, { timestamps: true })).toBe("2026-11-27T01:00:00.000000001Z one\n");
  });

  it("reads the kubelet's query and rejects nonsense", () => {
    const q = new URLSearchParams(
      "follow=true&tailLines=10&previous=1&timestamps=true&sinceSeconds=5&limitBytes=100",
    );
    expect(parseLogQuery(q, 10_000)).toEqual({
      follow: true,
      previous: true,
      timestamps: true,
      tailLines: 10,
      sinceMs: 5_000,
      limitBytes: 100,
    });
    expect(parseLogQuery(new URLSearchParams("tailLines=-1"))).not.toHaveProperty("tailLines");
    expect(() => parseLogQuery(new URLSearchParams("tailLines=ten"))).toThrow(/tailLines must be an integer/);
    expect(() => parseLogQuery(new URLSearchParams("limitBytes=0"))).toThrow(/limitBytes/);
  });
});

describe("exec protocol", () => {
  it("prefers v5, accepts v4, refuses the rest", () => {
    const kubectl132 = ["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io"];
    expect(chooseSubprotocol(kubectl132)).toBe("v5.channel.k8s.io");
    expect(chooseSubprotocol(["v4.channel.k8s.io"])).toBe("v4.channel.k8s.io");
    expect(chooseSubprotocol(["channel.k8s.io", "base64.channel.k8s.io"])).toBeUndefined();
  });

  it("frames channels and reports the exit code as kubectl reads it", () => {
    expect([...frame(1, "hi")]).toEqual([1, 104, 105]);
    expect(exitStatus(["true"], 0)).toEqual({ metadata: {}, status: "Success" });
    expect(exitStatus(["sh", "-c", "exit 3"], 3)).toMatchObject({
      status: "Failure",
      reason: "NonZeroExitCode",
      details: { causes: [{ reason: "ExitCode", message: "3" }] },
    });
  });

  it("takes the command and streams from the query (kubelet and apiserver spellings)", () => {
    expect(
      parseExecQuery(new URLSearchParams("command=sh&command=-c&command=id&stdin=true&stdout=true")),
    ).toEqual({
      command: ["sh", "-c", "id"],
      stdin: true,
      stdout: true,
      stderr: false,
      tty: false,
    });
    expect(parseExecQuery(new URLSearchParams("command=ls&input=1&error=1")).stderr).toBe(true);
    expect(() => parseExecQuery(new URLSearchParams("stdout=true"))).toThrow(/at least one command/);
  });
});

describe("lab-server's way to the pod's agent", () => {
  const pod: V1Pod = {
    metadata: { name: "web", namespace: "default" },
    spec: { nodeName: "n1", containers: [{ name: "app" }, { name: "side" }] },
    status: {
      phase: "Running",
      containerStatuses: [
        { name: "app", state: { running: {} } } as never,
        { name: "side", state: { waiting: { reason: "CrashLoopBackOff" } } } as never,
      ],
    },
  };
  const node: V1Node = {
    status: {
      addresses: [{ type: "InternalIP", address: "10.0.0.5" }],
      daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
    },
  };

  it("targets the node's InternalIP and agent port, the query passing through", () => {
    const t = nodeTarget(pod, node, "app");
    expect(t).toEqual({ host: "10.0.0.5", port: 10250, container: "app" });
    expect(agentPath("log", pod, t, new URLSearchParams("container=app&follow=true"))).toBe(
      "/containerLogs/default/web/app?follow=true",
    );
    expect(agentPath("attach", pod, t, new URLSearchParams("container=app&stdin=true"))).toBe(
      "/attach/default/web/app?stdin=true",
    );
    // port-forward is to the pod, as the kubelet's /portForward/{ns}/{pod}
    expect(agentPath("portforward", pod, t, new URLSearchParams("ports=8080"))).toBe(
      "/portForward/default/web?ports=8080",
    );
  });

  it("port-forward needs a Running pod, in upstream's words", () => {
    expect(() => assertPodRunning({ ...pod, status: { phase: "Running" } })).not.toThrow();
    expect(() => assertPodRunning({ ...pod, status: { phase: "Pending" } })).toThrow(
      "unable to forward port because pod is not running. Current status=Pending",
    );
  });

  it("answers wrong names, unscheduled pods and unknown nodes with a Status", () => {
    expect(() => nodeTarget(pod, node, "nope")).toThrow("container nope is not valid for pod web");
    expect(() => nodeTarget(pod, node, null)).toThrow(/a container name must be specified.*\[app side\]/);
    const unbound = { ...pod, spec: { ...pod.spec!, nodeName: undefined } } as V1Pod;
    expect(() => nodeTarget(unbound, undefined, "app")).toThrow(/does not have a host assigned/);
    expect(() => nodeTarget(pod, undefined, "app")).toThrow(/nodes "n1" not found/);
  });

  it("says a container that never started has no logs yet", () => {
    expect(() => assertLogsAvailable(pod, "app", false)).not.toThrow();
    expect(() => assertLogsAvailable(pod, "side", false)).toThrow(
      'container "side" in pod "web" is waiting to start: CrashLoopBackOff',
    );
    expect(() => assertLogsAvailable(pod, "side", true)).not.toThrow();
  });

  it("refuses exec into a container that is not running", () => {
    expect(() => assertRunning(pod, "app")).not.toThrow();
    expect(() => assertRunning(pod, "side")).toThrow(/not running in pod web \(CrashLoopBackOff\)/);
  });
});

describe("certificates for the agents' logs/exec port", () => {
  it("lab-server's kubelet-client identity and one serving certificate per node (name and address)", async () => {
    const { certSpecs } = await import("../../../../bootstrap/pki.ts");
    const { KUBELET_CLIENT_CN, KUBELET_CLIENT_GROUP } = await import("../../../../node/server/server.ts");
    const p = labPlan("pki", { network: { cidr: "10.210.0.0/24" } });
    const specs = certSpecs(p);
    expect(specs.find((s) => s.id === "apiserver-kubelet-client")).toMatchObject({
      cn: KUBELET_CLIENT_CN,
      o: [KUBELET_CLIENT_GROUP],
      usages: ["client"],
    });
    for (const n of p.nodes) {
      expect(specs.find((s) => s.id === `nodes/${n.name}-serving`)).toMatchObject({
        usages: ["server"],
        dns: [n.name],
        ips: [n.address],
      });
    }
  });
});
