import { describe, expect, it } from "vitest";
import {
  bridgeAddressProblem,
  labSites,
  parseIpAddrs,
  siteTag,
  siteWhere,
} from "../../../../provisioners/libvirt/placement.ts";
import { labPlan } from "../../../helpers/lab-plan.ts";

const HV2 = "qemu+ssh://root@hv2/system?keyfile=/k/hv2";

function twoHypervisors(extra: Record<string, unknown> = {}) {
  return labPlan("demo", {
    provider: { type: "libvirt", network: { bridge: "br0" } },
    network: { cidr: "192.168.1.0/24", gateway: "192.168.1.254" },
    nodes: [
      { name: "master-1", role: "master" },
      { name: "worker-1", role: "worker", uri: HV2 },
      { name: "worker-2", role: "worker" },
    ],
    ...extra,
  });
}

describe("where a libvirt lab's nodes run", () => {
  it("keeps a node's own URI in the plan, and leaves the others on spec.provider.uri", () => {
    const p = twoHypervisors();
    expect(p.nodes.map((n) => [n.name, n.uri])).toEqual([
      ["master-1", undefined],
      ["worker-1", HV2],
      ["worker-2", undefined],
    ]);
  });

  it("makes one site per hypervisor, each with its nodes and its own name suffix", () => {
    const sites = labSites(twoHypervisors());
    expect(sites.map((s) => [s.uri, s.nodes.map((n) => n.name)])).toEqual([
      ["qemu:///system", ["master-1", "worker-2"]],
      [HV2, ["worker-1"]],
    ]);
    expect(sites[0]!.tag).toMatch(/^\.[0-9a-f]{6}$/);
    expect(sites[1]!.tag).toMatch(/^\.[0-9a-f]{6}$/);
    expect(sites[0]!.tag).not.toBe(sites[1]!.tag);
  });

  it("gives two URIs to one host different tags, but ignores changed login parameters (keyfile=, command=)", () => {
    expect(siteTag("qemu:///system")).not.toBe(siteTag("qemu+ssh://root@127.0.0.1:2222/system"));
    expect(siteTag("qemu:///system")).not.toBe(siteTag("qemu:///system?socket=/run/other-sock"));
    expect(siteTag(HV2)).toBe(siteTag("qemu+ssh://root@hv2/system?keyfile=/other&command=/bin/ssh"));
  });

  it("keeps a one-hypervisor lab's names unsuffixed (as before per-node URIs)", () => {
    const single = labPlan("demo", {
      provider: { type: "libvirt", uri: HV2 },
      masters: { count: 1 },
      workers: { count: 1 },
    });
    const sites = labSites(single);
    expect(sites).toHaveLength(1);
    expect(sites[0]).toMatchObject({ uri: HV2, tag: "" });
    expect(siteWhere(single, sites[0]!)).toBe("spec.provider.uri");
  });

  it("names the node and its field in messages about a hypervisor", () => {
    const p = twoHypervisors();
    const [local, remote] = labSites(p);
    expect(siteWhere(p, local!)).toBe("spec.provider.uri (nodes master-1, worker-2)");
    expect(siteWhere(p, remote!)).toBe("spec.nodes[].uri of node worker-1");
  });
});

describe("bridge mode: the hypervisor's own network", () => {
  const addrs = parseIpAddrs(
    [
      "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever",
      "2: eth0    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0\\       valid_lft forever",
      "3: br0    inet 192.168.1.5/24 brd 192.168.1.255 scope global br0\\       valid_lft forever",
      "4: vlan7@eth0    inet 172.16.7.2/24 scope global vlan7",
    ].join("\n"),
  );

  it("reads `ip -4 -o addr show`", () => {
    expect(addrs).toEqual([
      { dev: "lo", address: "127.0.0.1", prefix: 8 },
      { dev: "eth0", address: "10.0.0.5", prefix: 24 },
      { dev: "br0", address: "192.168.1.5", prefix: 24 },
      { dev: "vlan7", address: "172.16.7.2", prefix: 24 },
    ]);
  });

  it("accepts a lab subnet the hypervisor is on", () => {
    expect(bridgeAddressProblem(twoHypervisors(), "hv2", "br0", addrs)).toBeUndefined();
  });

  it("refuses a subnet the hypervisor cannot reach, naming the bridge's own subnet as the fix", () => {
    const p = twoHypervisors({ network: { cidr: "10.99.0.0/24" } });
    const err = bridgeAddressProblem(p, "the hypervisor hv2", "br0", addrs)!;
    expect(err.code).toBe("LIBVIRT_BRIDGE_SUBNET");
    expect(err.what).toContain("the hypervisor hv2 has no address in the lab's subnet 10.99.0.0/24");
    expect(err.where).toBe("spec.network.cidr");
    expect(err.fix).toContain("br0 holds 192.168.1.5/24");
  });

  it("refuses a planned node address that is the hypervisor's own", () => {
    const p = twoHypervisors({
      nodes: [
        { name: "master-1", role: "master", address: "192.168.1.5" },
        { name: "worker-1", role: "worker", uri: HV2 },
      ],
    });
    const err = bridgeAddressProblem(p, "this machine", "br0", addrs)!;
    expect(err.code).toBe("LIBVIRT_BRIDGE_ADDRESS_TAKEN");
    expect(err.what).toContain(
      "192.168.1.5, planned for node master-1, is this machine's own address (on br0)",
    );
  });
});
