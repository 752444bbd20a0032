import { describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { checkTopology } from "../../../topology/load.ts";
import { DEFAULT_LAB_YAML } from "../../../topology/default-lab.ts";
import { deriveLabCidr, plan, LAB_SUBNET_POOL } from "../../../topology/plan.ts";
import { contains, mustParseCidr, overlaps, parseIPv4 } from "../../../lib/ipv4.ts";
import type { Lab } from "../../../topology/schema.ts";

function lab(name: string, spec: Record<string, unknown> = {}): Lab {
  const r = checkTopology(stringify({ apiVersion: "lab/v1alpha1", kind: "Lab", metadata: { name }, spec }));
  if (!r.lab) throw new Error(JSON.stringify(r.problems));
  return r.lab;
}

describe("planner", () => {
  it("is deterministic: the same file gives the same plan", () => {
    const a = plan(checkTopology(DEFAULT_LAB_YAML).lab!);
    const b = plan(checkTopology(DEFAULT_LAB_YAML).lab!);
    expect(a).toEqual(b);
  });

  it("plans the default lab: 3 masters then 2 workers, VIP, gateway, distinct pod CIDRs", () => {
    const p = plan(checkTopology(DEFAULT_LAB_YAML).lab!);
    expect(p.nodes.map((n) => `${n.name}:${n.role}`)).toEqual([
      "master-1:master",
      "master-2:master",
      "master-3:master",
      "worker-1:worker",
      "worker-2:worker",
    ]);
    const net = mustParseCidr(p.network.cidr);
    expect(contains(mustParseCidr(LAB_SUBNET_POOL), net.base)).toBe(true);
    const addrs = [p.network.gateway, p.network.vip, ...p.nodes.map((n) => n.address)];
    expect(new Set(addrs).size).toBe(addrs.length);
    for (const a of addrs) expect(contains(net, parseIPv4(a))).toBe(true);
    expect(new Set(p.nodes.map((n) => n.mac)).size).toBe(5);
    for (const n of p.nodes) expect(n.mac).toMatch(/^52:54:00(:[0-9a-f]{2}){3}$/);
    const pods = p.nodes.map((n) => mustParseCidr(n.podCIDR));
    for (let i = 0; i < pods.length; i++)
      for (let j = i + 1; j < pods.length; j++) expect(overlaps(pods[i]!, pods[j]!)).toBe(false);
    expect(p.workers.find((w) => w.name === "worker-1")!.memoryMiB).toBe(1536);
    expect(p.masters[0]!.memoryMiB).toBe(2048);
    expect(p.cluster.kubernetesServiceIP).toBe("10.96.0.1");
  });

  it("gives two labs with different names different subnets and host names", () => {
    const a = plan(lab("alpha"));
    const b = plan(lab("beta"));
    expect(a.network.cidr).not.toBe(b.network.cidr);
    expect(a.network.netns).not.toBe(b.network.netns);
    expect(a.network.hostVeth).not.toBe(b.network.hostVeth);
    expect(a.network.hostVeth.length).toBeLessThanOrEqual(15); // Linux IFNAMSIZ
    expect(a.nodes[0]!.mac).not.toBe(b.nodes[0]!.mac);
  });

  it("skips subnets already used on the host when deriving one", () => {
    const first = deriveLabCidr("alpha");
    const second = deriveLabCidr("alpha", [first]);
    expect(second).not.toBe(first);
    expect(plan(lab("alpha"), { taken: [first] }).network.cidr).toBe(second);
    // A wide route covering the first choice is skipped too.
    expect(
      overlaps(mustParseCidr(deriveLabCidr("alpha", ["10.200.0.0/14"])), mustParseCidr("10.200.0.0/14")),
    ).toBe(false);
  });

  it("keeps an explicit subnet and VIP, and places nodes around fixed addresses", () => {
    const p = plan(
      lab("x", {
        network: { cidr: "10.210.5.0/24", vip: "10.210.5.100" },
        nodes: [
          { name: "a", role: "master" },
          { name: "b", role: "worker", address: "10.210.5.21" },
          { name: "c", role: "worker" },
        ],
      }),
    );
    expect(p.network).toMatchObject({
      cidr: "10.210.5.0/24",
      vip: "10.210.5.100",
      gateway: "10.210.5.1",
      derived: false,
    });
    expect(p.nodes.map((n) => n.address)).toEqual(["10.210.5.11", "10.210.5.21", "10.210.5.22"]);
  });

  it("a single-master QEMU lab without a VIP uses the master as its endpoint (nothing would hold a VIP)", () => {
    const p = plan(lab("one", { masters: { count: 1 }, workers: { count: 1 } }));
    expect(p.network.vip).toBe(p.masters[0]!.address);
    const q = plan(
      lab("one", { masters: { count: 1 }, network: { cidr: "10.210.6.0/24", vip: "10.210.6.9" } }),
    );
    expect(q.network.vip).toBe("10.210.6.9");
  });

  it("a single-master lab without a VIP in a bare-metal file uses the master as its endpoint", () => {
    const p = plan(
      lab("bm", {
        provider: { type: "baremetal" },
        nodes: [{ name: "h1", role: "master", address: "192.0.2.10", ssh: { acceptNewHostKey: true } }],
      }),
    );
    expect(p.network.vip).toBe("192.0.2.10");
    expect(p.nodes[0]!.ssh.acceptNewHostKey).toBe(true);
  });

  it("applies per-group and per-node resource overrides over the defaults", () => {
    const p = plan(
      lab("r", {
        resources: { cpus: 2, memory: "1Gi", disk: "5Gi" },
        nodes: [
          { name: "m", role: "master" },
          { name: "w", role: "worker", resources: { memory: "3Gi" } },
        ],
      }),
    );
    expect(p.nodes.map((n) => [n.cpus, n.memoryMiB, n.diskMiB])).toEqual([
      [2, 1024, 5120],
      [2, 3072, 5120],
    ]);
  });

  it("adding workers does not move existing nodes", () => {
    const small = plan(lab("grow", { workers: { count: 1 } }));
    const big = plan(lab("grow", { workers: { count: 4 } }));
    for (const n of small.nodes) expect(big.nodes.find((b) => b.name === n.name)).toEqual(n);
  });
});
