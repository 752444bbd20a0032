import { readFileSync, readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { checkTopology } from "../../../topology/load.ts";
import { DEFAULT_LAB_YAML } from "../../../topology/default-lab.ts";
import { LabFile, labJsonSchema } from "../../../topology/schema.ts";
import { renderFieldReference } from "../../../topology/reference.ts";
import { EVEN_MASTERS_LINES } from "../../helpers/topology-text.ts";

/** A valid qemu topology to mutate; each case breaks one thing. */
function qemuLab(spec: Record<string, unknown> = {}, top: Record<string, unknown> = {}): string {
  return stringify({ apiVersion: "lab/v1alpha1", kind: "Lab", metadata: { name: "t" }, spec, ...top });
}

const bareHost = (name: string, role: string, address: string, extra: Record<string, unknown> = {}) => ({
  name,
  role,
  address,
  ssh: { user: "root", hostKey: "SHA256:" + "A".repeat(43) },
  ...extra,
});

interface Case {
  name: string;
  yaml: string;
  path: string;
  message: RegExp;
}

const cases: Case[] = [
  {
    name: "wrong apiVersion",
    yaml: qemuLab({}, { apiVersion: "v1" }),
    path: "apiVersion",
    message: /must be "lab\/v1alpha1" \(got string "v1"\)/,
  },
  { name: "wrong kind", yaml: qemuLab({}, { kind: "Cluster" }), path: "kind", message: /must be "Lab"/ },
  {
    name: "missing metadata",
    yaml: stringify({ apiVersion: "lab/v1alpha1", kind: "Lab" }),
    path: "metadata",
    message: /is required/,
  },
  {
    name: "invalid lab name",
    yaml: qemuLab({}, { metadata: { name: "My_Lab" } }),
    path: "metadata.name",
    message: /not a valid lab name/,
  },
  {
    name: "lab name too long",
    yaml: qemuLab({}, { metadata: { name: "a".repeat(21) } }),
    path: "metadata.name",
    message: /at most 20/,
  },
  {
    name: "unknown top-level field",
    yaml: qemuLab({}, { specs: {} }),
    path: "specs",
    message: /unknown field "specs"/,
  },
  {
    name: "unknown spec field (typo)",
    yaml: qemuLab({ master: { count: 3 } }),
    path: "spec.master",
    message: /unknown field "master"/,
  },
  {
    name: "unknown provider type",
    yaml: qemuLab({ provider: { type: "vbox" } }),
    path: "spec.provider.type",
    message: /qemu, libvirt, baremetal/,
  },
  {
    name: "bad accel",
    yaml: qemuLab({ provider: { type: "qemu", accel: "hvf" } }),
    path: "spec.provider.accel",
    message: /one of "auto", "kvm", "tcg"/,
  },
  {
    name: "uri on qemu provider",
    yaml: qemuLab({ provider: { type: "qemu", uri: "qemu:///system" } }),
    path: "spec.provider.uri",
    message: /unknown field "uri"/,
  },
  {
    name: "even master count",
    yaml: qemuLab({ masters: { count: 2 } }),
    path: "spec.masters.count",
    message: /must be 1, 3 or 5 \(got 2\)/,
  },
  {
    name: "zero masters",
    yaml: qemuLab({ masters: { count: 0 } }),
    path: "spec.masters.count",
    message: /must be 1, 3 or 5 \(got 0\)/,
  },
  {
    name: "master count as string",
    yaml: qemuLab({ masters: { count: "three" } }),
    path: "spec.masters.count",
    message: /must be a number \(got string "three"\)/,
  },
  {
    name: "negative workers",
    yaml: qemuLab({ workers: { count: -1 } }),
    path: "spec.workers.count",
    message: /must be at least 0 \(got number -1\)/,
  },
  {
    name: "fractional cpus",
    yaml: qemuLab({ resources: { cpus: 1.5 } }),
    path: "spec.resources.cpus",
    message: /must be an int/,
  },
  {
    name: "bad memory string",
    yaml: qemuLab({ resources: { memory: "2GB" } }),
    path: "spec.resources.memory",
    message: /"2GB" is not a size/,
  },
  {
    name: "bad disk string",
    yaml: qemuLab({ resources: { disk: "lots" } }),
    path: "spec.resources.disk",
    message: /"lots" is not a size/,
  },
  {
    name: "bad override memory",
    yaml: qemuLab({ workers: { count: 1, resources: { memory: "1 G" } } }),
    path: "spec.workers.resources.memory",
    message: /not a size/,
  },
  {
    name: "bad CIDR",
    yaml: qemuLab({ network: { cidr: "10.0.0.0/33" } }),
    path: "spec.network.cidr",
    message: /prefix length must be between \/8 and \/30 \(got \/33\)/,
  },
  {
    name: "CIDR with host bits",
    yaml: qemuLab({ network: { cidr: "10.0.0.5/24" } }),
    path: "spec.network.cidr",
    message: /host bits are set/,
  },
  {
    name: "bad VIP",
    yaml: qemuLab({ network: { vip: "10.0.0.300" } }),
    path: "spec.network.vip",
    message: /not an IPv4 address/,
  },
  {
    name: "VIP outside subnet",
    yaml: qemuLab({ network: { cidr: "10.210.0.0/24", vip: "10.211.0.10" } }),
    path: "spec.network.vip",
    message: /outside the lab subnet 10\.210\.0\.0\/24/,
  },
  {
    name: "VIP inside node range",
    yaml: qemuLab({ network: { cidr: "10.210.0.0/24", vip: "10.210.0.15" } }),
    path: "spec.network.vip",
    message: /inside the node range 10\.210\.0\.11-10\.210\.0\.22/,
  },
  {
    name: "VIP equals gateway",
    yaml: qemuLab({ network: { cidr: "10.210.0.0/24", vip: "10.210.0.1" } }),
    path: "spec.network.vip",
    message: /is the gateway/,
  },
  {
    name: "gateway outside subnet",
    yaml: qemuLab({ network: { cidr: "10.210.0.0/24", gateway: "10.9.0.1" } }),
    path: "spec.network.gateway",
    message: /outside 10\.210\.0\.0\/24/,
  },
  {
    name: "subnet too small",
    yaml: qemuLab({ network: { cidr: "10.210.0.0/28", vip: "10.210.0.2" } }),
    path: "spec.network.cidr",
    message: /too small for 5 nodes/,
  },
  {
    name: "lab CIDR overlaps pod CIDR",
    yaml: qemuLab({ network: { cidr: "10.244.9.0/24" } }),
    path: "spec.network.cidr",
    message: /overlaps spec\.cluster\.podCIDR/,
  },
  {
    name: "pod CIDR overlaps service CIDR",
    yaml: qemuLab({ cluster: { podCIDR: "10.96.0.0/12", serviceCIDR: "10.96.0.0/16" } }),
    path: "spec.cluster.podCIDR",
    message: /overlaps spec\.cluster\.serviceCIDR/,
  },
  {
    name: "pod CIDR too small for nodes",
    yaml: qemuLab({ cluster: { podCIDR: "10.244.0.0/23" } }),
    path: "spec.cluster.podCIDR",
    message: /holds only 2 node pod CIDRs/,
  },
  {
    name: "bad cluster domain",
    yaml: qemuLab({ cluster: { domain: "Cluster_Local" } }),
    path: "spec.cluster.domain",
    message: /DNS domain/,
  },
  {
    name: "nodes and counts together",
    yaml: qemuLab({ masters: { count: 1 }, nodes: [{ name: "a", role: "master" }] }),
    path: "spec.masters",
    message: /cannot be combined with spec\.nodes/,
  },
  {
    name: "even masters in node list",
    yaml: qemuLab({
      nodes: [
        { name: "a", role: "master" },
        { name: "b", role: "master" },
      ],
    }),
    path: "spec.nodes",
    message: /1, 3 or 5 masters \(got 2\)/,
  },
  {
    name: "duplicate node names",
    yaml: qemuLab({
      nodes: [
        { name: "a", role: "master" },
        { name: "a", role: "worker" },
      ],
    }),
    path: "spec.nodes.1.name",
    message: /duplicate node name "a"/,
  },
  {
    name: "duplicate node addresses",
    yaml: qemuLab({
      network: { cidr: "10.210.0.0/24" },
      nodes: [
        { name: "a", role: "master", address: "10.210.0.30" },
        { name: "b", role: "worker", address: "10.210.0.30" },
      ],
    }),
    path: "spec.nodes.1.address",
    message: /duplicate address 10\.210\.0\.30/,
  },
  {
    name: "node address outside subnet",
    yaml: qemuLab({
      network: { cidr: "10.210.0.0/24" },
      nodes: [{ name: "a", role: "master", address: "10.99.0.30" }],
    }),
    path: "spec.nodes.0.address",
    message: /outside the lab subnet/,
  },
  {
    name: "node address is the VIP",
    yaml: qemuLab({
      network: { cidr: "10.210.0.0/24" },
      nodes: [{ name: "a", role: "master", address: "10.210.0.10" }],
    }),
    path: "spec.nodes.0.address",
    message: /is the API VIP/,
  },
  {
    name: "bad role",
    yaml: qemuLab({ nodes: [{ name: "a", role: "leader" }] }),
    path: "spec.nodes.0.role",
    message: /one of "master", "worker"/,
  },
  {
    name: "bad node name",
    yaml: qemuLab({ nodes: [{ name: "Node 1", role: "master" }] }),
    path: "spec.nodes.0.name",
    message: /not a valid node name/,
  },
  {
    name: "empty node list",
    yaml: qemuLab({ nodes: [] }),
    path: "spec.nodes",
    message: /must be at least 1 items \(got an empty list\)/,
  },
  {
    name: "nodes not a list",
    yaml: qemuLab({ nodes: { a: 1 } }),
    path: "spec.nodes",
    message: /must be an array \(got a mapping\)/,
  },
  {
    name: "baremetal without nodes",
    yaml: qemuLab({ provider: { type: "baremetal" } }),
    path: "spec.nodes",
    message: /required for provider baremetal/,
  },
  {
    name: "baremetal node without address",
    yaml: qemuLab({
      provider: { type: "baremetal" },
      nodes: [{ name: "a", role: "master", ssh: { acceptNewHostKey: true } }],
    }),
    path: "spec.nodes.0.address",
    message: /required for a bare-metal host/,
  },
  {
    name: "baremetal node without host key",
    yaml: qemuLab({
      provider: { type: "baremetal" },
      nodes: [{ name: "a", role: "master", address: "192.0.2.10" }],
    }),
    path: "spec.nodes.0.ssh.hostKey",
    message: /host keys are pinned/,
  },
  {
    name: "bad host key fingerprint",
    yaml: qemuLab({
      provider: { type: "baremetal" },
      nodes: [bareHost("a", "master", "192.0.2.10", { ssh: { hostKey: "md5:aa" } })],
    }),
    path: "spec.nodes.0.ssh.hostKey",
    message: /SSH host key fingerprint/,
  },
  {
    name: "baremetal 3 masters without VIP",
    yaml: qemuLab({
      provider: { type: "baremetal" },
      nodes: [
        bareHost("a", "master", "192.0.2.10"),
        bareHost("b", "master", "192.0.2.11"),
        bareHost("c", "master", "192.0.2.12"),
      ],
    }),
    path: "spec.network.vip",
    message: /required with 3 masters on bare metal/,
  },
  {
    name: "ssh port out of range",
    yaml: qemuLab({
      provider: { type: "baremetal" },
      nodes: [bareHost("a", "master", "192.0.2.10", { ssh: { port: 70000, acceptNewHostKey: true } })],
    }),
    path: "spec.nodes.0.ssh.port",
    message: /must be at most 65535/,
  },
  {
    name: "host key on a VM node",
    yaml: qemuLab({ nodes: [{ name: "a", role: "master", ssh: { hostKey: "SHA256:" + "A".repeat(43) } }] }),
    path: "spec.nodes.0.ssh",
    message: /generated by lab for VMs/,
  },
  {
    name: "node uri on a qemu lab",
    yaml: qemuLab({ nodes: [{ name: "a", role: "master", uri: "qemu+ssh://root@hv2/system" }] }),
    path: "spec.nodes.0.uri",
    message: /only for provider libvirt/,
  },
  {
    name: "nodes on two hypervisors without a shared bridge",
    yaml: qemuLab({
      provider: { type: "libvirt" },
      network: { cidr: "192.168.1.0/24" },
      nodes: [
        { name: "a", role: "master" },
        { name: "b", role: "worker", uri: "qemu+ssh://root@hv2/system" },
      ],
    }),
    path: "spec.provider.network.bridge",
    message:
      /required when nodes run on different hypervisors \(qemu:\/\/\/system, qemu\+ssh:\/\/root@hv2\/system\)/,
  },
  {
    name: "bridge mode without the LAN's subnet",
    yaml: qemuLab({ provider: { type: "libvirt", network: { bridge: "br0" } } }),
    path: "spec.network.cidr",
    message: /required with spec.provider.network.bridge/,
  },
  {
    name: "bridge name too long for Linux",
    yaml: qemuLab({
      provider: { type: "libvirt", network: { bridge: "a-very-long-bridge0" } },
      network: { cidr: "192.168.1.0/24" },
    }),
    path: "spec.provider.network.bridge",
    message: /not a Linux bridge name/,
  },
  { name: "not a mapping", yaml: "- just\n- a list\n", path: "", message: /must be a mapping/ },
  {
    name: "YAML syntax error",
    yaml: "apiVersion: lab/v1alpha1\nkind: Lab\n  metadata: [\n",
    path: "",
    message: /YAML syntax/,
  },
];

describe("topology schema: every kind of mistake is reported with its path and a clear message", () => {
  it.each(cases)("$name", ({ yaml, path, message }) => {
    const r = checkTopology(yaml, "lab.yaml");
    expect(r.lab).toBeUndefined();
    const hit = r.problems.find((p) => p.path === path && message.test(p.message));
    expect(hit, `problems were: ${JSON.stringify(r.problems, null, 1)}`).toBeDefined();
    expect(hit!.file).toBe("lab.yaml");
    expect(hit!.line).toBeGreaterThan(0);
  });

  it("has at least 30 distinct cases", () => {
    expect(new Set(cases.map((c) => c.path + c.message.source)).size).toBeGreaterThanOrEqual(30);
  });

  it("points at the offending line and column, and gives the fix for an even master count", () => {
    const text = EVEN_MASTERS_LINES.join("\n");
    const [p] = checkTopology(text, "lab.yaml").problems;
    expect(p).toMatchObject({ file: "lab.yaml", line: 7, column: 5, path: "spec.masters.count" });
    expect(p!.fix).toMatch(/even number of etcd members/);
  });

  it("reports every problem at once, not just the first", () => {
    const r = checkTopology(
      qemuLab({ masters: { count: 4 }, resources: { memory: "x", cpus: 0 }, bogus: 1 }),
    );
    expect(r.problems.map((p) => p.path).sort()).toEqual(
      ["spec.bogus", "spec.masters.count", "spec.resources.cpus", "spec.resources.memory"].sort(),
    );
  });

  it("suggests the field that was meant for a typo", () => {
    const [p] = checkTopology(qemuLab({ workrs: { count: 1 } })).problems;
    expect(p!.fix).toBe('did you mean "workers"?');
  });
});

describe("valid topologies", () => {
  const examples = readdirSync("examples").filter((f) => f.endsWith(".yaml"));

  it.each(examples)("examples/%s is valid and round-trips through YAML", (file) => {
    const r = checkTopology(readFileSync(`examples/${file}`, "utf8"), file);
    expect(r.problems).toEqual([]);
    // Writing the parsed (defaulted) topology back out and reading it again gives the same value.
    const again = checkTopology(stringify(r.lab), file);
    expect(again.lab).toEqual(r.lab);
  });

  it("the built-in default is examples/default.yaml and has 3 masters and 2 workers", () => {
    expect(readFileSync("examples/default.yaml", "utf8")).toBe(DEFAULT_LAB_YAML);
    const lab = checkTopology(DEFAULT_LAB_YAML).lab!;
    expect(lab.spec.masters?.count).toBe(3);
    expect(lab.spec.workers?.count).toBe(2);
    expect(lab.spec.provider).toEqual({ type: "qemu", accel: "auto" });
  });

  it("a minimal file gets every default", () => {
    const lab = checkTopology(qemuLab()).lab!;
    expect(lab.spec.image).toBe("debian-12");
    expect(lab.spec.ssh.user).toBe("lab");
    expect(lab.spec.cluster.domain).toBe("cluster.local");
    expect(LabFile.parse(lab)).toEqual(lab);
  });

  it("exports a JSON Schema that names every top-level spec field", () => {
    const schema = labJsonSchema() as { properties: { spec: { properties: Record<string, unknown> } } };
    expect(Object.keys(schema.properties.spec.properties).sort()).toEqual(
      ["cluster", "image", "masters", "network", "nodes", "provider", "resources", "ssh", "workers"].sort(),
    );
  });
});

describe("libvirt labs on several hypervisors", () => {
  it("accepts nodes with their own URIs on a named bridge with the LAN's subnet", () => {
    const r = checkTopology(
      qemuLab({
        provider: { type: "libvirt", network: { bridge: "br0" } },
        network: { cidr: "192.168.1.0/24", gateway: "192.168.1.254" },
        nodes: [
          { name: "a", role: "master" },
          { name: "b", role: "worker", uri: "qemu+ssh://root@hv2/system" },
        ],
      }),
      "lab.yaml",
    );
    expect(r.problems).toEqual([]);
    expect(r.lab!.spec.nodes![1]!.uri).toBe("qemu+ssh://root@hv2/system");
    expect(r.lab!.spec.provider).toMatchObject({
      type: "libvirt",
      uri: "qemu:///system",
      network: { bridge: "br0" },
    });
  });
});

describe("docs/topology.md", () => {
  it("has the field reference generated from the schema (run `npm run docs` after changing the schema)", () => {
    expect(readFileSync("docs/topology.md", "utf8")).toContain(renderFieldReference());
  });
});
