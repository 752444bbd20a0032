import { describe, expect, it } from "vitest";
import {
  judgeHost,
  missingPackages,
  parseFacts,
  requiredPackages,
  defaultRequirements,
} from "../../../../provisioners/baremetal/precheck.ts";
import { renderTeardownScript } from "../../../../provisioners/baremetal/teardown.ts";

const node = { name: "m1", role: "master" as const, ssh: { port: 22, user: "ops", acceptNewHostKey: false } };
const good = parseFacts(
  "os_id=debian\nos_like=\nos_name=Debian GNU/Linux 12 (bookworm)\narch=x86_64\nsystemd=yes\nmem_kib=2000000\ndisk_kib=20000000\nsudo=yes\napt=yes\nlab_installed=no\nlistening=22 2024 \n",
);

describe("bare-metal host judgement", () => {
  it("accepts a Debian host with systemd, memory, disk and sudo", () => {
    expect(judgeHost(node, good, defaultRequirements("x86_64"))).toEqual([]);
    expect(
      judgeHost(node, { ...good, osId: "pop", osLike: "ubuntu debian" }, defaultRequirements("x86_64")),
    ).toEqual([]);
  });

  it("lists every problem of one host with a fix", () => {
    const bad = {
      ...good,
      osId: "fedora",
      osName: "Fedora 40",
      apt: false,
      systemd: false,
      arch: "riscv64",
      memMiB: 100,
      diskFreeMiB: 10,
      sudo: "no" as const,
    };
    const problems = judgeHost(node, bad, defaultRequirements("x86_64"));
    expect(problems.map((p) => p.what)).toEqual([
      "runs Fedora 40, not Debian or Ubuntu",
      "has no apt-get",
      "is not running systemd (no /run/systemd/system)",
      "has architecture riscv64, not x86_64 or arm64",
      "has 100 MiB of memory, a master needs at least 900 MiB",
      "has 10 MiB free on /var, needs 2048 MiB",
      "user ops cannot run sudo without a password",
    ]);
    expect(problems.every((p) => p.fix.length > 0 && p.node === "m1")).toBe(true);
  });

  it("refuses a fresh host whose etcd or apiserver ports are taken, but not lab's own on a rerun", () => {
    const busy = { ...good, listening: [22, 2379, 6443] };
    const [p] = judgeHost(node, busy, defaultRequirements("x86_64"));
    expect(p!.what).toBe(
      "already has something listening on TCP 2379, 6443 (needed by etcd, lab-server and lab-agent)",
    );
    expect(judgeHost(node, { ...busy, labInstalled: true }, defaultRequirements("x86_64"))).toEqual([]);
    expect(judgeHost({ ...node, role: "worker" }, busy, defaultRequirements("x86_64"))).toEqual([]);
    const [w] = judgeHost(
      { ...node, role: "worker" },
      { ...good, listening: [10250] },
      defaultRequirements("x86_64"),
    );
    expect(w!.what).toBe("already has something listening on TCP 10250 (needed by lab-agent)");
    expect(good.listening).toEqual([22, 2024]);
  });

  it("refuses an arm64 host when the shipped runtime is x86_64", () => {
    const [p] = judgeHost(node, { ...good, arch: "aarch64" }, defaultRequirements("x86_64"));
    expect(p!.what).toContain("ships the Node runtime of this machine (x86_64)");
  });

  it("knows which packages each role needs and which are missing", () => {
    expect(requiredPackages("master", 3)).toEqual(
      expect.arrayContaining(["etcd-server", "etcd-client", "keepalived", "containerd"]),
    );
    expect(requiredPackages("master", 1)).not.toContain("keepalived");
    expect(requiredPackages("worker", 3)).not.toContain("etcd-server");
    expect(
      missingPackages(
        ["runc", "containerd", "nftables"],
        "runc installed\ncontainerd:amd64 installed\nnftables not-installed\n",
      ),
    ).toEqual(["nftables"]);
  });

  it("tears down only what lab installed", () => {
    const s = renderTeardownScript({ vip: "10.0.0.10", prefix: 24 });
    expect(s).toContain("rm -rf /etc/lab /var/lib/lab /opt/lab");
    expect(s).toContain("lab-etcd.service");
    expect(s).toContain("systemctl unmask");
    expect(s).toContain('$4 == "10.0.0.10/24"');
    expect(s).not.toMatch(/apt-get|purge|\/etc\/keepalived|rm -rf \/etc\/systemd/);
  });
});
