import { chronyRole } from "../../../bootstrap/steps/clock.ts";
import { renderChronyConf } from "../../../templates/chrony.ts";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { BOOTSTRAP_STEPS } from "../../../bootstrap/index.ts";
import { renderKubeconfig, apiEndpoint } from "../../../bootstrap/kubeconfig.ts";
import { agentApiServers, agentConfig, CONTROL_PLANE_TAINT } from "../../../bootstrap/steps/join-nodes.ts";
import { nodesReadiness } from "../../../bootstrap/steps/wait-ready.ts";
import { vipHolders } from "../../../bootstrap/steps/vip.ts";
import { etcdMemberConfig } from "../../../bootstrap/etcd.ts";
import { etcdArgs } from "../../../templates/etcd.ts";
import { labPlan } from "../../helpers/lab-plan.ts";

const p = labPlan("steps", { network: { cidr: "10.220.0.0/24" } });

describe("bootstrap steps", () => {
  it("run in the documented order", () => {
    expect(BOOTSTRAP_STEPS.map((s) => s.id)).toEqual([
      "pki",
      "clock",
      "etcd",
      "control-plane",
      "vip",
      "join-nodes",
      "wait-ready",
    ]);
  });

  it("serve time from the first master to the lab subnet; every other node follows it", () => {
    expect(chronyRole({ plan: p }, "master-1")).toEqual({ serve: "10.220.0.0/24" });
    expect(chronyRole({ plan: p }, "worker-2")).toEqual({ follow: "10.220.0.11" });
    const serve = renderChronyConf({ serve: "10.220.0.0/24" });
    expect(serve).toContain("local stratum 10");
    expect(serve).toContain("allow 10.220.0.0/24");
    const follow = renderChronyConf({ follow: "10.220.0.11" });
    expect(follow).toMatch(/^server 10\.220\.0\.11 iburst/m);
    expect(follow).toContain("makestep 0.1 -1");
    expect(follow).not.toContain("pool ");
  });

  it("give every master an etcd member of the same three-member cluster", () => {
    const flags = p.masters.map((m) => etcdArgs(etcdMemberConfig(p, m)));
    const initial = flags.map((f) => f.find((a) => a.startsWith("--initial-cluster="))!);
    expect(new Set(initial).size).toBe(1);
    expect(initial[0]).toBe(
      "--initial-cluster=master-1=https://10.220.0.11:2380,master-2=https://10.220.0.12:2380,master-3=https://10.220.0.13:2380",
    );
  });

  it("point agents at the VIP first and every master after, tainting masters", () => {
    expect(agentApiServers(p)).toEqual([
      "https://10.220.0.10:6443",
      "https://10.220.0.11:6443",
      "https://10.220.0.12:6443",
      "https://10.220.0.13:6443",
    ]);
    expect(agentConfig(p, p.masters[0]!).taints).toEqual([CONTROL_PLANE_TAINT]);
    expect(agentConfig(p, p.workers[0]!).taints).toEqual([]);
  });

  it("judge readiness per node with a reason", () => {
    const r = nodesReadiness(p, {
      items: [
        { metadata: { name: "master-1" }, status: { conditions: [{ type: "Ready", status: "True" }] } },
        {
          metadata: { name: "master-2" },
          status: { conditions: [{ type: "Ready", status: "False", reason: "KubeletNotReady" }] },
        },
        { metadata: { name: "master-3" } },
      ],
    });
    expect(r.ready).toEqual(["master-1"]);
    expect(r.notReady).toEqual([
      { name: "master-2", why: "Ready=False (KubeletNotReady)" },
      { name: "master-3", why: "no Ready condition yet" },
      { name: "worker-1", why: "not registered" },
      { name: "worker-2", why: "not registered" },
    ]);
  });

  it("write kubeconfigs with embedded or file credentials for the VIP endpoint", () => {
    const k = parse(
      renderKubeconfig({
        cluster: "steps",
        user: "lab-admin",
        server: apiEndpoint(p),
        ca: { pem: "CA" },
        cert: { pem: "C" },
        key: { file: "/k" },
      }),
    );
    expect(k.clusters[0].cluster.server).toBe("https://10.220.0.10:6443");
    expect(Buffer.from(k.clusters[0].cluster["certificate-authority-data"], "base64").toString()).toBe("CA");
    expect(k.users[0].user["client-key"]).toBe("/k");
    expect(k["current-context"]).toBe("lab-admin@steps");
  });
});

describe("vip.held: which master holds the VIP", () => {
  it("finds the VIP among a master's addresses, not a neighbour address that starts alike", () => {
    const out = new Map([
      [
        "master-1",
        "2: eth0    inet 10.202.174.11/24 brd 10.202.174.255 scope global eth0\\       valid_lft forever",
      ],
      [
        "master-2",
        "2: eth0    inet 10.202.174.12/24 brd 10.202.174.255 scope global eth0\\       valid_lft forever\n" +
          "2: eth0    inet 10.202.174.10/24 scope global secondary eth0\\       valid_lft forever",
      ],
      ["master-3", "2: eth0    inet 10.202.174.100/24 scope global eth0"],
    ]);
    expect(vipHolders(out, "10.202.174.10")).toEqual(["master-2"]);
    expect(vipHolders(new Map([["master-1", ""]]), "10.202.174.10")).toEqual([]);
  });
});
