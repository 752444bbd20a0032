/**
 * libvirt XML for a lab: the domain of one node, the lab's network and its storage pool. Pure
 * functions of plain values, so the XML is tested without a daemon. Every object carries the lab's
 * name; domains also carry a `<metadata>` element in the lab's own XML namespace, because a name
 * alone is ambiguous (`lab-a-b-master-1` could be lab "a" or lab "a-b").
 */

/** The lab's XML namespace for libvirt `<metadata>`; changing it orphans existing domains. */
export const LAB_XMLNS = "https://lab.invalid/xmlns/libvirt/v1";

export type DomainType = "kvm" | "qemu";

export interface DomainSpec {
  /** Full libvirt name, `lab-<lab>-<node>`. */
  name: string;
  lab: string;
  node: string;
  role: string;
  /** The hypervisor's site tag (without the dot) in a lab on several hypervisors. */
  site?: string;
  type: DomainType;
  cpus: number;
  memoryMiB: number;
  mac: string;
  /** libvirt network the NIC joins. */
  network: string;
  /** Paths on the hypervisor host. */
  disk: string;
  seed: string;
  /** Direct kernel boot (the built-in image); without it the disk boots through firmware. */
  kernel?: { path: string; initrd: string; cmdline: string };
  consoleLog: string;
  /** TCG translation cache; the default (~1 GiB) makes each QEMU ~1.3 GB RSS. */
  tbCacheMiB?: number;
}

export interface LabMarker {
  lab: string;
  node: string;
  role: string;
  site?: string;
}

/** Escapes text for XML content and attribute values. */
export function xmlEscape(s: string): string {
  return s
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

const e = xmlEscape;

export function renderDomainXml(d: DomainSpec): string {
  const tcg = d.type === "qemu";
  const lines = [
    `<domain type="${d.type}">`,
    `  <name>${e(d.name)}</name>`,
    `  <title>${e(`lab ${d.lab}: ${d.node} (${d.role})`)}</title>`,
    `  <metadata>`,
    `    <lab:node xmlns:lab="${LAB_XMLNS}" lab="${e(d.lab)}" node="${e(d.node)}" role="${e(d.role)}"${d.site ? ` site="${e(d.site)}"` : ""}/>`,
    `  </metadata>`,
    `  <memory unit="MiB">${d.memoryMiB}</memory>`,
    `  <vcpu>${d.cpus}</vcpu>`,
    `  <os>`,
    `    <type arch="x86_64">hvm</type>`,
    ...(d.kernel
      ? [
          `    <kernel>${e(d.kernel.path)}</kernel>`,
          `    <initrd>${e(d.kernel.initrd)}</initrd>`,
          `    <cmdline>${e(d.kernel.cmdline)}</cmdline>`,
        ]
      : [`    <boot dev="hd"/>`]),
    `  </os>`,
    `  <features>`,
    `    <acpi/>`,
    `    <apic/>`,
    ...(tcg && d.tbCacheMiB
      ? [`    <tcg>`, `      <tb-cache unit="MiB">${d.tbCacheMiB}</tb-cache>`, `    </tcg>`]
      : []),
    `  </features>`,
    // host-passthrough needs KVM; under TCG QEMU's default model is the one that works.
    ...(tcg ? [] : [`  <cpu mode="host-passthrough"/>`]),
    `  <on_poweroff>destroy</on_poweroff>`,
    `  <on_reboot>restart</on_reboot>`,
    `  <on_crash>destroy</on_crash>`,
    `  <devices>`,
    `    <disk type="file" device="disk">`,
    `      <driver name="qemu" type="qcow2" discard="unmap"/>`,
    `      <source file="${e(d.disk)}"/>`,
    `      <target dev="vda" bus="virtio"/>`,
    `    </disk>`,
    `    <disk type="file" device="disk">`,
    `      <driver name="qemu" type="raw"/>`,
    `      <source file="${e(d.seed)}"/>`,
    `      <target dev="vdb" bus="virtio"/>`,
    `      <readonly/>`,
    `    </disk>`,
    `    <interface type="network">`,
    `      <mac address="${e(d.mac)}"/>`,
    `      <source network="${e(d.network)}"/>`,
    `      <model type="virtio"/>`,
    `    </interface>`,
    `    <serial type="file">`,
    `      <source path="${e(d.consoleLog)}" append="on"/>`,
    `      <target port="0"/>`,
    `    </serial>`,
    // sshd and cloud-init want entropy early; a TCG guest gathers it slowly on its own.
    `    <rng model="virtio">`,
    `      <backend model="random">/dev/urandom</backend>`,
    `    </rng>`,
    `    <memballoon model="none"/>`,
    `  </devices>`,
    `</domain>`,
  ];
  return lines.join("\n") + "\n";
}

/**
 * The lab marker of a domain's XML as libvirt returns it (libvirt keeps our element and
 * namespace but may change the prefix and attribute quoting), or undefined when it has none.
 */
export function parseLabMarker(domainXml: string): LabMarker | undefined {
  const meta = /<metadata>([\s\S]*?)<\/metadata>/.exec(domainXml)?.[1];
  if (!meta) return undefined;
  const nsDecl = new RegExp(`xmlns:([A-Za-z_][\\w.-]*)=["']${escapeRegExp(LAB_XMLNS)}["']`).exec(meta);
  if (!nsDecl) return undefined;
  const prefix = escapeRegExp(nsDecl[1]!);
  const el = new RegExp(`<${prefix}:node\\b([^>]*)/?>`).exec(meta)?.[1];
  if (!el) return undefined;
  const attr = (name: string) => {
    const m = new RegExp(`\\s${name}=(?:"([^"]*)"|'([^']*)')`).exec(el);
    return m ? xmlUnescape(m[1] ?? m[2] ?? "") : undefined;
  };
  const lab = attr("lab");
  const node = attr("node");
  if (!lab || !node) return undefined;
  const site = attr("site");
  return { lab, node, role: attr("role") ?? "", ...(site ? { site } : {}) };
}

function xmlUnescape(s: string): string {
  return s
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n)))
    .replace(/&amp;/g, "&");
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

export interface NetworkSpec {
  name: string;
  /** Host bridge, at most 15 characters. */
  bridge: string;
  /** The host's address on the bridge (the plan's gateway). */
  gateway: string;
  prefix: number;
}

/**
 * An isolated network (no `<forward>`): VMs reach each other and the host on the gateway address,
 * nothing else. No `<dhcp>`: nodes get their static addresses from the plan through cloud-init.
 */
export function renderNetworkXml(n: NetworkSpec): string {
  return [
    `<network>`,
    `  <name>${e(n.name)}</name>`,
    `  <bridge name="${e(n.bridge)}" stp="off" delay="0"/>`,
    // No DNS either: libvirt would start dnsmasq on the bridge, which nodes do not need.
    `  <dns enable="no"/>`,
    `  <ip address="${e(n.gateway)}" prefix="${n.prefix}"/>`,
    `</network>`,
    ``,
  ].join("\n");
}

/**
 * A network onto an existing host bridge (`<forward mode="bridge">`): libvirt only plugs the
 * nodes' taps into it; addresses, routing and DHCP are the bridge's LAN's. A named network rather
 * than `<interface type="bridge">`, so `virsh net-list` shows what the lab uses and domains are
 * written the same in both modes.
 */
export function renderBridgeNetworkXml(n: { name: string; bridge: string }): string {
  return [
    `<network>`,
    `  <name>${e(n.name)}</name>`,
    `  <forward mode="bridge"/>`,
    `  <bridge name="${e(n.bridge)}"/>`,
    `</network>`,
    ``,
  ].join("\n");
}

export interface PoolSpec {
  name: string;
  /** Directory on the hypervisor host. */
  path: string;
}

/** A directory pool: the lab's overlays, seeds, kernel, initrd and consoles, removed as one. */
export function renderPoolXml(p: PoolSpec): string {
  return [
    `<pool type="dir">`,
    `  <name>${e(p.name)}</name>`,
    `  <target>`,
    `    <path>${e(p.path)}</path>`,
    `  </target>`,
    `</pool>`,
    ``,
  ].join("\n");
}
