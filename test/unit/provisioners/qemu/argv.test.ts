import { describe, expect, it } from "vitest";
import { decideAccel } from "../../../../provisioners/qemu/accel.ts";
import { qemuArgv, vmProcessName, type VmSpec } from "../../../../provisioners/qemu/argv.ts";
import { nodeFromArgv } from "../../../../provisioners/qemu/processes.ts";
import { LabError } from "../../../../topology/errors.ts";

const vm: VmSpec = {
  lab: "demo",
  node: "master-1",
  accel: "tcg",
  cpus: 2,
  memoryMiB: 1024,
  disk: "/s/vms/master-1/disk.qcow2",
  seed: "/s/vms/master-1/seed.iso",
  tap: "tap0",
  mac: "52:54:00:aa:bb:cc",
  kernel: { path: "/img/vmlinuz", initrd: "/img/initrd.img", cmdline: "root=/dev/vda rw console=ttyS0" },
  consoleLog: "/s/vms/master-1/console.log",
  qmpSocket: "/s/vms/master-1/qmp.sock",
  pidFile: "/s/vms/master-1/qemu.pid",
};

const after = (argv: string[], flag: string) => argv[argv.indexOf(flag) + 1];
/** The value after each of `flags` in `argv`, by flag. */
const valuesOf = (argv: string[], ...flags: string[]) =>
  Object.fromEntries(flags.map((f) => [f, after(argv, f)]));

describe("qemuArgv", () => {
  it("tags the process with lab and node, so lab down finds it without state", () => {
    const argv = qemuArgv(vm);
    expect(after(argv, "-name")).toBe("lab:demo/master-1");
    expect(nodeFromArgv(["/usr/bin/qemu-system-x86_64", ...argv], "demo")).toBe("master-1");
    expect(nodeFromArgv(["/usr/bin/qemu-system-x86_64", ...argv], "dem")).toBeUndefined();
    expect(nodeFromArgv(["/bin/sleep", "-name", vmProcessName("demo", "x")], "demo")).toBeUndefined();
  });

  it("uses TCG with a 256 MiB translation cache (a master fits; QEMU's 1 GiB default costs ~1.3 GB RSS)", () => {
    const argv = qemuArgv(vm);
    expect(after(argv, "-accel")).toBe("tcg,thread=multi,tb-size=256");
    expect(qemuArgv({ ...vm, accel: "kvm" })).toEqual(
      expect.arrayContaining(["-accel", "kvm", "-cpu", "host"]),
    );
  });

  it("boots the image's kernel directly, with the overlay, the seed, the planned MAC on the tap", () => {
    const argv = qemuArgv(vm);
    expect(valuesOf(argv, "-kernel", "-initrd", "-append", "-smp", "-m")).toEqual({
      "-kernel": "/img/vmlinuz",
      "-initrd": "/img/initrd.img",
      "-append": "root=/dev/vda rw console=ttyS0",
      "-smp": "2",
      "-m": "1024M",
    });
    expect(argv).toContain("file=/s/vms/master-1/disk.qcow2,if=virtio,format=qcow2,discard=unmap");
    expect(argv).toContain("file=/s/vms/master-1/seed.iso,if=virtio,format=raw,readonly=on");
    expect(argv).toContain("tap,id=net0,ifname=tap0,script=no,downscript=no");
    expect(argv).toContain("virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:cc");
  });

  it("logs the console to a file, exposes QMP, writes a pid file and detaches", () => {
    const argv = qemuArgv(vm);
    expect(valuesOf(argv, "-serial", "-qmp", "-pidfile")).toEqual({
      "-serial": "file:/s/vms/master-1/console.log",
      "-qmp": "unix:/s/vms/master-1/qmp.sock,server=on,wait=off",
      "-pidfile": "/s/vms/master-1/qemu.pid",
    });
    expect(argv).toContain("-daemonize");
  });

  it("boots user cloud images through firmware (no -kernel)", () => {
    const { kernel: _k, ...rest } = vm;
    const argv = qemuArgv(rest);
    expect(argv).not.toContain("-kernel");
    expect(argv).not.toContain("-append");
  });
});

describe("decideAccel", () => {
  it("auto uses KVM only when /dev/kvm opens and the CPU shows vmx/svm", () => {
    expect(decideAccel("auto", { kvmOpens: true, cpuVirt: true })).toEqual({ accel: "kvm" });
    const noFlag = decideAccel("auto", { kvmOpens: true, cpuVirt: false });
    expect(noFlag.accel).toBe("tcg");
    expect(noFlag.notice).toMatch(/no vmx\/svm/);
    expect(noFlag.notice).toMatch(/slower/);
    expect(noFlag.notice).toMatch(/provider\.type: nspawn.*native speed/);
    const noDev = decideAccel("auto", { kvmOpens: false, cpuVirt: true });
    expect(noDev.accel).toBe("tcg");
    expect(noDev.notice).toMatch(/\/dev\/kvm cannot be opened/);
    expect(noDev.notice!.split("\n")).toHaveLength(1);
  });

  it("tcg is taken as asked, without a notice", () => {
    expect(decideAccel("tcg", { kvmOpens: true, cpuVirt: true })).toEqual({ accel: "tcg" });
  });

  it("an explicit kvm on a host without usable KVM is refused with a fix", () => {
    expect(() => decideAccel("kvm", { kvmOpens: true, cpuVirt: false })).toThrow(LabError);
    expect(() => decideAccel("kvm", { kvmOpens: true, cpuVirt: false })).toThrow(/accel: auto/);
    expect(decideAccel("kvm", { kvmOpens: true, cpuVirt: true })).toEqual({ accel: "kvm" });
  });
});
