import { describe, expect, it } from "vitest";
import { memTotal, osImage } from "../../../node/heartbeat.ts";
import { microTime } from "../../../lib/time.ts";
import {
  desiredNode,
  nodeStatus,
  parseLabels,
  parseTaints,
  renewedLease,
  type NodeRegistration,
} from "../../../node/node-status.ts";

const reg: NodeRegistration = {
  nodeName: "w1",
  nodeIP: "10.0.0.5",
  podCIDR: "10.244.1.0/24",
  labels: { "node-role.kubernetes.io/control-plane": "" },
  taints: [{ key: "node-role.kubernetes.io/control-plane", effect: "NoSchedule" }],
  capacity: { cpu: "2", memory: "2000Ki", pods: "110" },
  nodeInfo: {
    architecture: "amd64",
    operatingSystem: "linux",
    bootID: "b",
    containerRuntimeVersion: "containerd://1.6.20",
    kernelVersion: "6.1",
    kubeProxyVersion: "v",
    kubeletVersion: "v",
    machineID: "m",
    osImage: "Debian",
    systemUUID: "u",
  },
};

describe("node registration", () => {
  it("parses kubelet-style taints and labels, and rejects malformed ones", () => {
    expect(parseTaints("a=b:NoSchedule, c:NoExecute")).toEqual([
      { key: "a", value: "b", effect: "NoSchedule" },
      { key: "c", effect: "NoExecute" },
    ]);
    expect(() => parseTaints("a=b")).toThrow(/invalid taint "a=b"/);
    expect(parseLabels("x=1,node-role.kubernetes.io/worker=")).toEqual({
      x: "1",
      "node-role.kubernetes.io/worker": "",
    });
    expect(() => parseLabels("novalue")).toThrow(/invalid label/);
  });

  it("creates a Node with hostname/os/arch labels, taints and the pod CIDR", () => {
    const n = desiredNode(reg);
    expect(n.metadata?.labels).toEqual({
      "kubernetes.io/hostname": "w1",
      "kubernetes.io/os": "linux",
      "kubernetes.io/arch": "amd64",
      "node-role.kubernetes.io/control-plane": "",
    });
    expect(n.spec).toEqual({
      podCIDR: "10.244.1.0/24",
      podCIDRs: ["10.244.1.0/24"],
      taints: [{ key: "node-role.kubernetes.io/control-plane", effect: "NoSchedule" }],
    });
  });

  it("keeps a pod CIDR set by IPAM, other labels and taints, without duplicating ours", () => {
    const n = desiredNode(reg, {
      metadata: { name: "w1", resourceVersion: "7", labels: { keep: "me" } },
      spec: {
        podCIDR: "10.244.9.0/24",
        taints: [
          { key: "node-role.kubernetes.io/control-plane", effect: "NoSchedule" },
          { key: "other", effect: "NoExecute" },
        ],
      },
    });
    expect(n.spec?.podCIDR).toBe("10.244.9.0/24");
    expect(n.spec?.taints).toHaveLength(2);
    expect(n.metadata?.labels?.keep).toBe("me");
    expect(n.metadata?.resourceVersion).toBe("7");
  });

  it("moves lastTransitionTime only when Ready changes", () => {
    const t1 = new Date("2026-01-01T00:00:00Z");
    const t2 = new Date("2026-01-01T00:01:00Z");
    const ready = { ready: true, reason: "AgentReady", message: "ok" };
    const s1 = nodeStatus(reg, ready, t1);
    const s2 = nodeStatus(reg, ready, t2, s1);
    const r2 = s2.conditions!.find((c) => c.type === "Ready")!;
    expect(r2.lastHeartbeatTime).toEqual(t2);
    expect(r2.lastTransitionTime).toEqual(t1);
    const s3 = nodeStatus(reg, { ready: false, reason: "AgentNotReady", message: "down" }, t2, s2);
    expect(s3.conditions!.find((c) => c.type === "Ready")).toMatchObject({
      status: "False",
      lastTransitionTime: t2,
    });
    expect(s1.addresses).toContainEqual({ type: "InternalIP", address: "10.0.0.5" });
    expect(s1.allocatable).toEqual(reg.capacity);
  });

  it("renews a Lease with MicroTime stamps, keeping acquireTime", () => {
    expect(microTime(new Date("2026-01-01T00:00:00.123Z"))).toBe("2026-01-01T00:00:00.123000Z");
    const l1 = renewedLease("w1", new Date("2026-01-01T00:00:00Z"));
    expect(l1.metadata).toEqual({ name: "w1", namespace: "kube-node-lease" });
    expect(l1.spec).toMatchObject({ holderIdentity: "w1", leaseDurationSeconds: 40 });
    const l2 = renewedLease("w1", new Date("2026-01-01T00:00:10Z"), l1);
    expect(l2.spec?.acquireTime).toBe(l1.spec?.acquireTime);
    expect(String(l2.spec?.renewTime)).toBe("2026-01-01T00:00:10.000000Z");
  });

  it("reads memory capacity and the OS name from /proc and /etc/os-release text", () => {
    expect(memTotal("MemTotal:       24598124 kB\nMemFree: 1 kB\n")).toBe("24598124Ki");
    expect(osImage('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')).toBe(
      "Debian GNU/Linux 12 (bookworm)",
    );
  });
});
