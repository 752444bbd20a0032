import { describe, expect, it } from "vitest";
import { chooseDomainType } from "../../../provisioners/libvirt/accel.ts";
import {
  bridgeName,
  domainName,
  isLabObjectName,
  isLocalUri,
  networkName,
  poolName,
  poolPath,
} from "../../../provisioners/libvirt/names.ts";
import {
  LAB_XMLNS,
  parseLabMarker,
  renderBridgeNetworkXml,
  renderDomainXml,
  renderNetworkXml,
  renderPoolXml,
  type DomainSpec,
} from "../../../templates/libvirt-domain.ts";

const spec: DomainSpec = {
  name: "lab-demo-master-1",
  lab: "demo",
  node: "master-1",
  role: "master",
  type: "qemu",
  cpus: 2,
  memoryMiB: 1536,
  mac: "52:54:00:aa:bb:cc",
  network: "lab-demo",
  disk: "/var/lib/libvirt/images/lab-demo/master-1.qcow2",
  seed: "/var/lib/libvirt/images/lab-demo/master-1-seed.img",
  kernel: {
    path: "/var/lib/libvirt/images/lab-demo/vmlinuz",
    initrd: "/var/lib/libvirt/images/lab-demo/initrd.img",
    cmdline: "root=/dev/vda rw console=ttyS0,115200",
  },
  consoleLog: "/var/lib/libvirt/images/lab-demo/master-1.console.log",
  tbCacheMiB: 64,
};

describe("libvirt domain XML", () => {
  const xml = renderDomainXml(spec);

  it("boots the planned kernel directly from the overlay, with the seed as a read-only second disk", () => {
    expect(xml).toContain(`<kernel>${spec.kernel!.path}</kernel>`);
    expect(xml).toContain(`<initrd>${spec.kernel!.initrd}</initrd>`);
    expect(xml).toContain(`<cmdline>${spec.kernel!.cmdline}</cmdline>`);
    expect(xml).not.toContain("<boot ");
    expect(xml).toMatch(/type="qcow2"[^]*?<source file="[^"]*master-1\.qcow2"\/>\s*<target dev="vda"/);
    expect(xml).toMatch(
      /<source file="[^"]*master-1-seed\.img"\/>\s*<target dev="vdb" bus="virtio"\/>\s*<readonly\/>/,
    );
  });

  it("boots a user's cloud image through firmware from its disk", () => {
    const fw = renderDomainXml({ ...spec, kernel: undefined });
    expect(fw).toContain('<boot dev="hd"/>');
    expect(fw).not.toContain("<kernel>");
  });

  it("has the planned name, size, MAC and network, and a serial console to a file", () => {
    expect(xml).toContain("<name>lab-demo-master-1</name>");
    expect(xml).toContain('<memory unit="MiB">1536</memory>');
    expect(xml).toContain("<vcpu>2</vcpu>");
    expect(xml).toContain('<mac address="52:54:00:aa:bb:cc"/>');
    expect(xml).toContain('<source network="lab-demo"/>');
    expect(xml).toMatch(/<serial type="file">\s*<source path="[^"]*master-1\.console\.log" append="on"\/>/);
  });

  it("uses TCG with a bounded translation cache for type qemu, host CPU for kvm", () => {
    expect(xml).toContain('<domain type="qemu">');
    expect(xml).toContain('<tb-cache unit="MiB">64</tb-cache>');
    expect(xml).not.toContain("host-passthrough");
    const kvm = renderDomainXml({ ...spec, type: "kvm" });
    expect(kvm).toContain('<domain type="kvm">');
    expect(kvm).not.toContain("tb-cache");
    expect(kvm).toContain('<cpu mode="host-passthrough"/>');
  });

  it("escapes values, so a kernel command line with & or quotes stays well-formed", () => {
    const odd = renderDomainXml({ ...spec, kernel: { ...spec.kernel!, cmdline: `a=1 & b="2" <c>` } });
    expect(odd).toContain("<cmdline>a=1 &amp; b=&quot;2&quot; &lt;c&gt;</cmdline>");
  });

  it("marks the domain with the lab and node in the lab's namespace, and reads the marker back", () => {
    expect(xml).toContain(`xmlns:lab="${LAB_XMLNS}"`);
    expect(parseLabMarker(xml)).toEqual({ lab: "demo", node: "master-1", role: "master" });
  });

  it("reads the marker in the form libvirt returns it (other prefix, single quotes)", () => {
    const fromLibvirt = `<domain type='qemu'>
  <name>lab-demo-worker-1</name>
  <metadata>
    <other:thing xmlns:other="urn:x" a="b"/>
    <l:node xmlns:l="${LAB_XMLNS}" lab='demo' node='worker-1' role='worker'/>
  </metadata>
</domain>`;
    expect(parseLabMarker(fromLibvirt)).toEqual({ lab: "demo", node: "worker-1", role: "worker" });
  });

  it("carries the hypervisor's site in a lab on several hypervisors, and only then", () => {
    const onSite = renderDomainXml({ ...spec, site: "a1b2c3" });
    expect(parseLabMarker(onSite)).toEqual({ lab: "demo", node: "master-1", role: "master", site: "a1b2c3" });
    expect(xml).not.toContain("site=");
  });

  it("does not claim domains without the marker or with another namespace", () => {
    expect(parseLabMarker("<domain><name>lab-demo-master-1</name></domain>")).toBeUndefined();
    expect(
      parseLabMarker(
        `<domain><metadata><lab:node xmlns:lab="urn:someone-else" lab="demo" node="m"/></metadata></domain>`,
      ),
    ).toBeUndefined();
  });
});

describe("libvirt network and pool XML", () => {
  it("is an isolated bridge (no forward, no DHCP) with the plan's gateway on the host side", () => {
    const xml = renderNetworkXml({
      name: "lab-demo",
      bridge: "labv-abc123",
      gateway: "10.200.7.1",
      prefix: 24,
    });
    expect(xml).toContain("<name>lab-demo</name>");
    expect(xml).toContain('<bridge name="labv-abc123" stp="off" delay="0"/>');
    expect(xml).toContain('<ip address="10.200.7.1" prefix="24"/>');
    expect(xml).not.toContain("<forward");
    expect(xml).not.toContain("<dhcp");
    expect(xml).toContain('<dns enable="no"/>');
  });

  it("in bridge mode only plugs nodes into the user's bridge: no address, DHCP or DNS of lab's", () => {
    const xml = renderBridgeNetworkXml({ name: "lab-demo.a1b2c3", bridge: "br0" });
    expect(xml).toContain("<name>lab-demo.a1b2c3</name>");
    expect(xml).toContain('<forward mode="bridge"/>');
    expect(xml).toContain('<bridge name="br0"/>');
    expect(xml).not.toContain("<ip");
    expect(xml).not.toContain("<dhcp");
  });

  it("puts the pool in its own directory", () => {
    const xml = renderPoolXml({ name: "lab-demo", path: "/var/lib/libvirt/images/lab-demo" });
    expect(xml).toContain('<pool type="dir">');
    expect(xml).toContain("<path>/var/lib/libvirt/images/lab-demo</path>");
  });
});

describe("libvirt names and domain type", () => {
  it("names every host object after the lab", () => {
    expect(domainName("demo", "master-1")).toBe("lab-demo-master-1");
    expect(networkName("demo")).toBe("lab-demo");
    expect(poolName("demo")).toBe("lab-demo");
    expect(poolPath("demo")).toBe("/var/lib/libvirt/images/lab-demo");
  });

  it("suffixes a hypervisor's network and pool in a lab on several, and tells the lab's own from a longer lab's", () => {
    expect(networkName("demo", ".a1b2c3")).toBe("lab-demo.a1b2c3");
    expect(poolPath("demo", ".a1b2c3")).toBe("/var/lib/libvirt/images/lab-demo.a1b2c3");
    expect(isLabObjectName("demo", "lab-demo")).toBe(true);
    expect(isLabObjectName("demo", "lab-demo.a1b2c3")).toBe(true);
    expect(isLabObjectName("demo", "lab-demo-2")).toBe(false);
    expect(isLabObjectName("demo", "lab-demo-2.a1b2c3")).toBe(false);
  });

  it("keeps the bridge name within Linux's 15 characters", () => {
    expect(bridgeName("abcdef").length).toBeLessThanOrEqual(15);
  });

  it("tells local URIs from remote ones", () => {
    expect(isLocalUri("qemu:///system")).toBe(true);
    expect(isLocalUri("qemu:///session")).toBe(true);
    expect(isLocalUri("qemu+ssh://root@hv1/system")).toBe(false);
    expect(isLocalUri("qemu+tcp://127.0.0.1:1/system")).toBe(false);
  });

  it("uses kvm only when /dev/kvm opens and the CPU has vmx/svm", () => {
    expect(chooseDomainType({ kvmDevice: true, cpuVirt: true })).toBe("kvm");
    expect(chooseDomainType({ kvmDevice: true, cpuVirt: false })).toBe("qemu");
    expect(chooseDomainType({ kvmDevice: false, cpuVirt: true })).toBe("qemu");
  });
});
