/**
 * Checking a bare-metal host before touching it: gather facts with one read-only shell script, then
 * judge them (pure) against what the cluster needs. Every problem of every host is collected and
 * reported at once, each with a fix.
 */
import type { PlannedNode } from "../../topology/plan.ts";

/** Read-only: prints `key=value` lines; needs nothing beyond POSIX sh, awk, df. */
export const FACTS_SCRIPT = `
if [ -r /etc/os-release ]; then . /etc/os-release; fi
echo "os_id=\${ID:-}"
echo "os_like=\${ID_LIKE:-}"
echo "os_name=\${PRETTY_NAME:-unknown}"
echo "arch=$(uname -m)"
if [ -d /run/systemd/system ]; then echo systemd=yes; else echo systemd=no; fi
echo "mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
echo "disk_kib=$(df -Pk /var 2>/dev/null | awk 'NR==2 {print $4}')"
if [ "$(id -u)" = 0 ]; then echo sudo=root; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then echo sudo=yes; else echo sudo=no; fi
if command -v apt-get >/dev/null 2>&1; then echo apt=yes; else echo apt=no; fi
if [ -d /etc/lab ]; then echo lab_installed=yes; else echo lab_installed=no; fi
if command -v ss >/dev/null 2>&1; then echo "listening=$(ss -ltnH 2>/dev/null | awk '{n=split($4,a,":"); print a[n]}' | sort -un | tr '\n' ' ')"; fi
`;

export interface HostFacts {
  osId: string;
  osLike: string;
  osName: string;
  arch: string;
  systemd: boolean;
  memMiB: number;
  diskFreeMiB: number;
  sudo: "root" | "yes" | "no";
  apt: boolean;
  /** lab already installed itself here (a rerun): its own daemons hold their ports. */
  labInstalled: boolean;
  /** TCP ports something listens on. */
  listening: number[];
}

export function parseFacts(out: string): HostFacts {
  const kv = new Map<string, string>();
  for (const line of out.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) kv.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  const num = (k: string) => Number(kv.get(k) || "0") || 0;
  const sudo = kv.get("sudo");
  return {
    osId: kv.get("os_id") ?? "",
    osLike: kv.get("os_like") ?? "",
    osName: kv.get("os_name") ?? "unknown",
    arch: kv.get("arch") ?? "",
    systemd: kv.get("systemd") === "yes",
    memMiB: Math.floor(num("mem_kib") / 1024),
    diskFreeMiB: Math.floor(num("disk_kib") / 1024),
    sudo: sudo === "root" || sudo === "yes" ? sudo : "no",
    apt: kv.get("apt") === "yes",
    labInstalled: kv.get("lab_installed") === "yes",
    listening: (kv.get("listening") ?? "")
      .split(/\s+/)
      .filter(Boolean)
      .map(Number)
      .filter((n) => Number.isInteger(n) && n > 0),
  };
}

export interface Requirements {
  /** Minimum memory (MiB) by role; a machine reports a little less than its RAM size. */
  memMiB: { master: number; worker: number };
  /** Minimum free space on /var (MiB): etcd data, container images. */
  diskFreeMiB: number;
  /** Architectures lab can run on (it ships its own Node runtime, built for the lab host's). */
  arches: string[];
  /** TCP ports lab's daemons will listen on, which must be free on a fresh host. */
  ports: { master: number[]; worker: number[] };
}

export function defaultRequirements(runtimeArch: string): Requirements {
  return {
    memMiB: { master: 900, worker: 450 },
    diskFreeMiB: 2048,
    arches: [runtimeArch],
    // etcd client and peer, the apiserver and its local health port; lab-agent's logs/exec server and
    // node-local DNS (on masters too: they run lab-agent, tainted).
    ports: { master: [2379, 2380, 6443, 6444, 10250, 10053], worker: [10250, 10053] },
  };
}

export interface HostProblem {
  node: string;
  what: string;
  fix: string;
}

/** Every reason `facts` make `node` unfit, empty when it is fine. Pure. */
export function judgeHost(
  node: Pick<PlannedNode, "name" | "role" | "ssh">,
  facts: HostFacts,
  req: Requirements,
): HostProblem[] {
  const out: HostProblem[] = [];
  const add = (what: string, fix: string) => out.push({ node: node.name, what, fix });
  const debianLike =
    facts.osId === "debian" || facts.osId === "ubuntu" || /\b(debian|ubuntu)\b/.test(facts.osLike);
  if (!debianLike) add(`runs ${facts.osName}, not Debian or Ubuntu`, "use a Debian 12 or Ubuntu 22.04+ host");
  if (!facts.apt) add("has no apt-get", "use a Debian or Ubuntu host with apt");
  if (!facts.systemd)
    add(
      "is not running systemd (no /run/systemd/system)",
      "boot the host with systemd as init; lab installs systemd units",
    );
  if (!["x86_64", "aarch64"].includes(facts.arch)) {
    add(`has architecture ${facts.arch}, not x86_64 or arm64`, "use an x86_64 or arm64 host");
  } else if (!req.arches.includes(facts.arch)) {
    add(
      `has architecture ${facts.arch}, but lab ships the Node runtime of this machine (${req.arches.join(", ")})`,
      `run lab from a ${facts.arch} machine, or use ${req.arches.join("/")} hosts`,
    );
  }
  const needMem = req.memMiB[node.role];
  if (facts.memMiB < needMem)
    add(
      `has ${facts.memMiB} MiB of memory, a ${node.role} needs at least ${needMem} MiB`,
      "add memory or give this role to a larger host",
    );
  if (facts.diskFreeMiB < req.diskFreeMiB)
    add(`has ${facts.diskFreeMiB} MiB free on /var, needs ${req.diskFreeMiB} MiB`, "free space on /var");
  if (!facts.labInstalled) {
    const taken = req.ports[node.role].filter((p) => facts.listening.includes(p));
    if (taken.length) {
      add(
        `already has something listening on TCP ${taken.join(", ")} (needed by ${node.role === "master" ? "etcd, lab-server and lab-agent" : "lab-agent"})`,
        "stop that service (e.g. Debian's etcd.service: `systemctl disable --now etcd`) or use another host",
      );
    }
  }
  if (facts.sudo === "no") {
    add(
      `user ${node.ssh.user} cannot run sudo without a password`,
      `add \`${node.ssh.user} ALL=(ALL) NOPASSWD: ALL\` to /etc/sudoers.d/lab on the host, or connect as root`,
    );
  }
  return out;
}

/** Debian packages a node needs, by role. */
export function requiredPackages(role: "master" | "worker", masters: number): string[] {
  const all = [
    "containerd",
    "runc",
    "containernetworking-plugins",
    "nftables",
    "iproute2",
    "openssl",
    "ca-certificates",
    // the lab's offline time source (bootstrap step "clock")
    "chrony",
  ];
  if (role === "worker") return all;
  return [...all, "etcd-server", "etcd-client", ...(masters > 1 ? ["keepalived"] : [])];
}

/** Which of `pkgs` are not installed, from `dpkg-query -W -f='${Package} ${db:Status-Status}\n'` output. */
export function missingPackages(pkgs: string[], dpkgOut: string): string[] {
  const installed = new Set(
    dpkgOut
      .split("\n")
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[1] === "installed")
      .map((f) => f[0]!.replace(/:.*$/, "")),
  );
  return pkgs.filter((p) => !installed.has(p));
}

export function formatHostProblems(problems: HostProblem[]): string {
  return problems.map((p) => `  ${p.node}: ${p.what} (fix: ${p.fix})`).join("\n");
}
