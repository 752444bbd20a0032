/**
 * The QEMU command line of one VM (pure). `-name lab:LAB/NODE` is how `lab down` finds the
 * process without state; everything else a VM owns lives in its run directory.
 */
import { TCG_TB_CACHE_MIB, type Accel } from "./accel.ts";

export interface VmSpec {
  lab: string;
  node: string;
  accel: Accel;
  /** TCG CPU model (default `max`: every feature TCG can emulate). */
  cpuModel?: string;
  cpus: number;
  memoryMiB: number;
  /** The VM's qcow2 overlay. */
  disk: string;
  /** NoCloud seed ISO. */
  seed: string;
  tap: string;
  mac: string;
  /** Direct kernel boot; absent for user cloud images (firmware boot). */
  kernel?: { path: string; initrd: string; cmdline: string };
  consoleLog: string;
  qmpSocket: string;
  pidFile: string;
}

/** The `-name` value that tags a VM with its lab and node. */
export function vmProcessName(lab: string, node: string): string {
  return `lab:${lab}/${node}`;
}

export function qemuArgv(vm: VmSpec): string[] {
  const accel =
    vm.accel === "kvm"
      ? ["-accel", "kvm", "-cpu", "host"]
      : ["-accel", `tcg,thread=multi,tb-size=${TCG_TB_CACHE_MIB}`, "-cpu", vm.cpuModel ?? "max"];
  const boot = vm.kernel
    ? ["-kernel", vm.kernel.path, "-initrd", vm.kernel.initrd, "-append", vm.kernel.cmdline]
    : [];
  return [
    "-name",
    vmProcessName(vm.lab, vm.node),
    "-machine",
    "q35",
    ...accel,
    "-smp",
    String(vm.cpus),
    "-m",
    `${vm.memoryMiB}M`,
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    ...boot,
    "-drive",
    `file=${vm.disk},if=virtio,format=qcow2,discard=unmap`,
    "-drive",
    `file=${vm.seed},if=virtio,format=raw,readonly=on`,
    "-netdev",
    `tap,id=net0,ifname=${vm.tap},script=no,downscript=no`,
    "-device",
    `virtio-net-pci,netdev=net0,mac=${vm.mac}`,
    "-device",
    "virtio-rng-pci",
    "-serial",
    `file:${vm.consoleLog}`,
    "-qmp",
    `unix:${vm.qmpSocket},server=on,wait=off`,
    "-pidfile",
    vm.pidFile,
    "-daemonize",
  ];
}
