/**
 * Which libvirt domain type a lab gets: `kvm` only where it can work, else `qemu` (TCG). /dev/kvm
 * opening is not enough: on hosts without vmx/svm (nested virtualisation off) KVM guests hang
 * right after "Probing EDD", so the CPU flags decide too.
 */
import { constants } from "node:fs";
import { access, readFile } from "node:fs/promises";
import type { DomainType } from "../../templates/libvirt-domain.ts";

export interface KvmFacts {
  /** /dev/kvm exists and is read-writable. */
  kvmDevice: boolean;
  /** The CPU advertises vmx (Intel) or svm (AMD). */
  cpuVirt: boolean;
}

export function chooseDomainType(f: KvmFacts): DomainType {
  return f.kvmDevice && f.cpuVirt ? "kvm" : "qemu";
}

/** Facts of this machine (the hypervisor of a local URI). */
export async function localKvmFacts(): Promise<KvmFacts> {
  const kvmDevice = await access("/dev/kvm", constants.R_OK | constants.W_OK).then(
    () => true,
    () => false,
  );
  const cpuinfo = await readFile("/proc/cpuinfo", "utf8").catch(() => "");
  return { kvmDevice, cpuVirt: /^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo) };
}
