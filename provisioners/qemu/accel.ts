/**
 * Choosing the accelerator. Where /dev/kvm opens but the CPU shows no vmx/svm (nested
 * virtualization off), KVM guests hang early in boot, so `auto` needs both. The decision is pure;
 * probing the host is separate.
 */
import { open } from "node:fs/promises";
import { readFile } from "node:fs/promises";
import { LabError } from "../../topology/errors.ts";

export type Accel = "kvm" | "tcg";

/**
 * TCG's translation cache per VM, in MiB. QEMU's default (1 GiB) costs ~1.3 GB RSS per VM; 64 MiB
 * (~350 MB) was too small for a master: etcd, lab-server and lab-agent outgrow it, QEMU flushed the
 * whole cache every ~2 s (`info jit`: 1,355 flushes in 40 min), and the default lab's API took
 * 10-30 s per request. At 256 MiB: about one flush a minute, requests 0.05-1 s, ~950 MB RSS per master.
 */
export const TCG_TB_CACHE_MIB = 256;

/** What `lab up` and `lab doctor` add where VMs would run emulated (one line). */
export const NSPAWN_HINT =
  "VMs run emulated here; `spec.provider.type: nspawn` runs the same lab as systemd-nspawn machines at native speed (examples/nspawn.yaml)";

export interface AccelProbe {
  /** /dev/kvm could be opened read-write. */
  kvmOpens: boolean;
  /** The CPU flags line of /proc/cpuinfo shows vmx (Intel) or svm (AMD). */
  cpuVirt: boolean;
}

export interface AccelDecision {
  accel: Accel;
  /** Why TCG was chosen, and what it costs; set when `auto` falls back. */
  notice?: string;
}

export function decideAccel(requested: "auto" | "kvm" | "tcg", probe: AccelProbe): AccelDecision {
  if (requested === "tcg") return { accel: "tcg" };
  const usable = probe.kvmOpens && probe.cpuVirt;
  if (requested === "kvm") {
    if (!usable) {
      throw new LabError({
        code: "KVM_UNUSABLE",
        what: `accel kvm was requested but ${kvmWhy(probe)}`,
        where: "spec.provider.accel",
        fix: "set accel: auto (or tcg) to use software emulation",
        source: "host",
      });
    }
    return { accel: "kvm" };
  }
  if (usable) return { accel: "kvm" };
  return {
    accel: "tcg",
    notice: `KVM unusable (${kvmWhy(probe)}): using TCG software emulation, roughly 5-10x slower (about 30 s to SSH per VM on 1 core, ~0.8-1 GB RSS each with a ${TCG_TB_CACHE_MIB} MiB translation cache). ${NSPAWN_HINT}`,
  };
}

export function kvmWhy(p: AccelProbe): string {
  if (!p.kvmOpens) return "/dev/kvm cannot be opened";
  return "the CPU shows no vmx/svm flag (nested virtualization is off)";
}

/** Reads the two facts decideAccel needs from this host. */
export async function probeAccel(): Promise<AccelProbe> {
  let kvmOpens = false;
  try {
    const fh = await open("/dev/kvm", "r+");
    await fh.close();
    kvmOpens = true;
  } catch {
    kvmOpens = false;
  }
  let cpuVirt = false;
  try {
    cpuVirt = /^flags\s*:.*\b(vmx|svm)\b/m.test(await readFile("/proc/cpuinfo", "utf8"));
  } catch {
    cpuVirt = false;
  }
  return { kvmOpens, cpuVirt };
}
