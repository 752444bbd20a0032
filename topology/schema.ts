/**
 * The topology file (`lab.yaml`), defined once: the TypeScript types and the exported JSON Schema
 * both come from these zod schemas. Cross-field checks (overlapping CIDRs, VIP placement, subnet
 * size, duplicates) live in validate.ts, after the shape is known to be right.
 */
import { z } from "zod";
import { isIPv4, parseCidr } from "../lib/ipv4.ts";
import { parseSize } from "../lib/quantity.ts";

export const API_VERSION = "lab/v1alpha1";

const withFix = (fix: string) => ({ params: { fix } });

const dnsLabel = (what: string, max: number) =>
  z
    .string()
    .min(1)
    .max(max, { error: `must be at most ${max} characters`, ...withFix(`shorten the ${what}`) })
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, {
      error: (iss) => `"${String(iss.input)}" is not a valid ${what}`,
      ...withFix("use lowercase letters, digits and '-', starting and ending with a letter or digit"),
    });

export const Ipv4 = z.string().refine(isIPv4, {
  error: (iss) => `"${String(iss.input)}" is not an IPv4 address`,
  ...withFix("write four numbers 0-255 separated by dots, e.g. 10.200.0.10"),
});

export const Cidr = z.string().superRefine((s, ctx) => {
  const c = parseCidr(s);
  if (typeof c === "string")
    ctx.addIssue({ code: "custom", message: c, params: { fix: "e.g. 10.200.0.0/24" } });
});

export const Quantity = z.string().superRefine((s, ctx) => {
  const q = parseSize(s);
  if (typeof q === "string") ctx.addIssue({ code: "custom", message: q, params: { fix: "e.g. 2Gi" } });
});

export const Resources = z
  .strictObject({
    cpus: z.number().int().min(1).max(64).describe("virtual CPUs").default(1),
    memory: Quantity.describe("memory, e.g. 1536Mi or 2Gi").default("2Gi"),
    disk: Quantity.describe("root disk size (VMs), e.g. 10Gi").default("10Gi"),
  })
  .describe("CPU, memory and disk of a node");

const ResourceOverrides = z
  .strictObject({
    cpus: z.number().int().min(1).max(64).optional(),
    memory: Quantity.optional(),
    disk: Quantity.optional(),
  })
  .describe("per-group or per-node overrides of spec.resources");

/** A pinned SSH host key fingerprint; the fix says how to read it on `where`. */
const hostKeyFingerprint = (where: string) =>
  z.string().regex(/^SHA256:[A-Za-z0-9+/]{43}$/, {
    error: "must be an SSH host key fingerprint like SHA256:abc…(43 characters)",
    ...withFix(`run \`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\` on ${where}`),
  });

export const QemuProvider = z.strictObject({
  type: z.literal("qemu"),
  accel: z
    .enum(["auto", "kvm", "tcg"])
    .describe("auto: KVM when /dev/kvm opens and the CPU shows vmx/svm, else TCG (software, slower)")
    .default("auto"),
});

export const LibvirtProvider = z.strictObject({
  type: z.literal("libvirt"),
  uri: z
    .string()
    .min(1)
    .describe("libvirt connection URI; a remote hypervisor as qemu+ssh://user@host/system")
    .default("qemu:///system"),
  hostKey: hostKeyFingerprint("the hypervisor")
    .optional()
    .describe(
      "pinned SSH host key fingerprint of the hypervisor in uri (remote); known_hosts is used otherwise, and for nodes' own URIs",
    ),
  network: z
    .strictObject({
      bridge: z
        .string()
        .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/, {
          error: (iss) => `"${String(iss.input)}" is not a Linux bridge name`,
          ...withFix("use the name of an existing host bridge (at most 15 characters), e.g. br0"),
        })
        .describe(
          "an existing host bridge on every hypervisor (e.g. br0, onto your LAN): nodes join it instead of a per-lab isolated network; required when nodes use different URIs",
        ),
    })
    .optional()
    .describe("how nodes are connected; a per-lab isolated network on the hypervisor when omitted"),
});

export const BaremetalProvider = z.strictObject({
  type: z.literal("baremetal"),
});

export const NspawnProvider = z
  .strictObject({
    type: z.literal("nspawn"),
  })
  .describe(
    "nodes as systemd-nspawn machines on this host (native speed where KVM is missing; Debian package systemd-container)",
  );

export const Provider = z
  .discriminatedUnion("type", [QemuProvider, LibvirtProvider, BaremetalProvider, NspawnProvider], {
    error: (iss) =>
      iss.code === "invalid_union"
        ? `provider type must be one of qemu, libvirt, baremetal, nspawn`
        : undefined,
  })
  .describe("where the machines come from");

export const NodeSsh = z
  .strictObject({
    port: z.number().int().min(1).max(65535).default(22),
    user: z.string().min(1).optional().describe("defaults to spec.ssh.user"),
    key: z
      .string()
      .min(1)
      .optional()
      .describe("private key file; defaults to spec.ssh.key or the lab's own key"),
    hostKey: hostKeyFingerprint("the host").optional().describe("pinned host key fingerprint (SHA256:...)"),
    acceptNewHostKey: z
      .boolean()
      .default(false)
      .describe("trust the host key seen on first connection and record it in the lab state"),
  })
  .describe("how to reach a bare-metal host");

export const NodeSpec = z.strictObject({
  name: dnsLabel("node name", 40).describe("node (and Kubernetes Node) name"),
  role: z.enum(["master", "worker"]).describe("master: etcd + lab-server (+ agent); worker: lab-agent"),
  address: Ipv4.optional().describe("static address; planned from spec.network.cidr when omitted (VMs)"),
  resources: ResourceOverrides.optional(),
  ssh: NodeSsh.optional(),
  uri: z
    .string()
    .min(1)
    .optional()
    .describe(
      "libvirt only: this node's hypervisor (e.g. qemu+ssh://root@hv2/system); spec.provider.uri by default",
    ),
  labels: z.record(z.string(), z.string()).optional().describe("extra Kubernetes node labels"),
});

export const MasterCount = z
  .number()
  .int()
  .refine((n) => n === 1 || n === 3 || n === 5, {
    error: (iss) => `must be 1, 3 or 5 (got ${String(iss.input)})`,
    ...withFix("an even number of etcd members tolerates no more failures than one fewer"),
  });

export const LabSpec = z.strictObject({
  provider: Provider.default({ type: "qemu", accel: "auto" }),
  image: z
    .string()
    .min(1)
    .describe("built-in recipe name (debian-12) or a path to a cloud image with cloud-init")
    .default("debian-12"),
  network: z
    .strictObject({
      cidr: Cidr.optional().describe(
        "lab subnet; derived from the lab name when omitted (10.200.0.0/13 pool)",
      ),
      gateway: Ipv4.optional().describe("host-side address in the lab subnet; the first address by default"),
      vip: Ipv4.optional().describe("virtual IP of the API server; the 10th address by default"),
    })
    .default({}),
  ssh: z
    .strictObject({
      user: z
        .string()
        .min(1)
        .describe("login user on the nodes (created on VMs, must exist on bare metal)")
        .default("lab"),
      key: z
        .string()
        .min(1)
        .optional()
        .describe("private key for all nodes; the lab generates its own otherwise"),
    })
    .default({ user: "lab" }),
  resources: Resources.default({ cpus: 1, memory: "2Gi", disk: "10Gi" }),
  masters: z
    .strictObject({
      count: MasterCount.describe("1, 3 or 5 (etcd quorum)").default(3),
      resources: ResourceOverrides.optional(),
    })
    .describe("the control-plane nodes, named master-1..N")
    .optional(),
  workers: z
    .strictObject({
      count: z.number().int().min(0).max(200).describe("number of workers").default(2),
      resources: ResourceOverrides.optional(),
    })
    .describe("the worker nodes, named worker-1..N")
    .optional(),
  nodes: z.array(NodeSpec).min(1).optional().describe("explicit node list; replaces masters/workers counts"),
  cluster: z
    .strictObject({
      podCIDR: Cidr.describe("pod addresses; each node gets a slice").default("10.244.0.0/16"),
      serviceCIDR: Cidr.describe("Service ClusterIPs").default("10.96.0.0/16"),
      domain: z
        .string()
        .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, {
          error: "must be a DNS domain like cluster.local",
        })
        .describe("cluster DNS domain")
        .default("cluster.local"),
      nodeCIDRMaskSize: z.number().int().min(16).max(28).default(24).describe("size of each node's pod CIDR"),
      podEvictionTimeoutSeconds: z
        .number()
        .int()
        .min(0)
        .default(60)
        .describe("how long pods stay on a NotReady node before they are evicted"),
    })
    .default({
      podCIDR: "10.244.0.0/16",
      serviceCIDR: "10.96.0.0/16",
      domain: "cluster.local",
      nodeCIDRMaskSize: 24,
      podEvictionTimeoutSeconds: 60,
    }),
});

export const LabFile = z.strictObject({
  apiVersion: z.literal(API_VERSION, { error: `must be ${API_VERSION}` }),
  kind: z.literal("Lab", { error: "must be Lab" }),
  metadata: z.strictObject({
    name: dnsLabel("lab name", 20).describe("lab name; host resources (netns, links, VMs) carry it"),
  }),
  spec: LabSpec.default(LabSpec.parse({})),
});

/** A topology as written by the user. */
export type LabInput = z.input<typeof LabFile>;
/** A topology with every default applied; the rest of the program only sees this. */
export type Lab = z.output<typeof LabFile>;
export type NodeSpec = z.output<typeof NodeSpec>;
export type Provider = z.output<typeof Provider>;

/** JSON Schema for editors (`lab schema`), describing the input form (defaults optional). */
export function labJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(LabFile, { io: "input", unrepresentable: "any" }),
    title: "lab topology (lab.yaml)",
  };
}
