import { describe, expect, it } from "vitest";
import { parseHierarchies, limitFiles } from "../../../../provisioners/nspawn/cgroups.ts";
import { directFiles, freeId, nspawnSeed, upperFiles } from "../../../../provisioners/nspawn/guest.ts";
import { startScript } from "../../../../provisioners/nspawn/index.ts";
import {
  machineName,
  nodeFromNspawnArgv,
  nodeNetns,
  nodeNetnsPrefix,
  nspawnArgv,
} from "../../../../provisioners/nspawn/names.ts";
import { LabFile } from "../../../../topology/schema.ts";
import { labPlan } from "../../../helpers/lab-plan.ts";
import { clockStep, ownClockMachines } from "../../../../bootstrap/steps/clock.ts";
import { joinsEarly } from "../../../../bootstrap/steps/join-nodes.ts";
import type { StepContext } from "../../../../bootstrap/steps/context.ts";
import type { Machine } from "../../../../provisioners/provisioner.ts";

const spec = {
  lab: "demo",
  node: "master-1",
  root: "/s/nspawn/master-1/root",
  hostname: "master-1",
  netnsPath: "/run/netns/lab-demo.master-1",
  containerdDir: "/s/nspawn/master-1/containerd",
  devices: ["/dev/net/tun"],
};

const seedInput = {
  lab: "demo",
  hostname: "worker-1",
  user: "lab",
  authorizedKey: "ssh-ed25519 AAAAclient lab-demo",
  hostKey: {
    privateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----",
    publicKey: "ssh-ed25519 AAAAhost",
  },
  mac: "52:54:00:26:56:11",
  address: "10.200.0.21",
  prefix: 24,
  gateway: "10.200.0.1",
};

describe("nspawn topology", () => {
  it("accepts provider nspawn and names it among the choices when the type is wrong", () => {
    const withProvider = (type: string) =>
      LabFile.safeParse({
        apiVersion: "lab/v1alpha1",
        kind: "Lab",
        metadata: { name: "n" },
        spec: { provider: { type } },
      });
    expect(withProvider("nspawn").success).toBe(true);
    const bad = withProvider("lxc");
    expect(bad.success).toBe(false);
    expect(JSON.stringify(bad.error!.issues)).toMatch(/qemu, libvirt, baremetal, nspawn/);
  });
});

describe("nspawn command line", () => {
  const argv = nspawnArgv(spec);

  it("carries the lab marker, so lab down finds the machine without state", () => {
    expect(nodeFromNspawnArgv(argv, "demo")).toBe("master-1");
    expect(nodeFromNspawnArgv(argv, "dem")).toBeUndefined();
    expect(nodeFromNspawnArgv(["/usr/bin/qemu-system-x86_64", ...argv.slice(1)], "demo")).toBeUndefined();
  });

  it("boots without a host systemd, joins the node's namespace, keeps the host clock", () => {
    expect(argv).toEqual(
      expect.arrayContaining([
        "--boot",
        "--register=no",
        "--keep-unit",
        "--capability=all",
        "--drop-capability=CAP_SYS_TIME",
        "--network-namespace-path=/run/netns/lab-demo.master-1",
        "--bind=/s/nspawn/master-1/containerd:/var/lib/containerd",
        "--bind=/dev/net/tun",
        `--directory=${spec.root}`,
      ]),
    );
    expect(argv.find((a) => a.startsWith("--system-call-filter="))).toMatch(/@keyring/);
  });

  it("machine and namespace names: valid, and a lab's namespace prefix never matches another lab", () => {
    expect(machineName("demo", "master-1")).toBe("lab-demo-master-1");
    expect(machineName("a".repeat(20), "n".repeat(40)).length).toBeLessThanOrEqual(64);
    expect(nodeNetns("demo", "worker-2").startsWith(nodeNetnsPrefix("demo"))).toBe(true);
    expect(nodeNetns("demo-2", "worker-2").startsWith(nodeNetnsPrefix("demo"))).toBe(false);
  });

  it("the start script joins every cgroup, then mounts the overlay in its own namespaces", () => {
    const s = startScript({
      procs: ["/sys/fs/cgroup/cpu/lab-nspawn/demo/master-1/cgroup.procs"],
      cgroupMounts: [
        { path: "/sys/fs/cgroup/cpu", v2: false, options: "rw,relatime,cpu" },
        { path: "/sys/fs/cgroup/unified", v2: true, options: "rw" },
      ],
      lower: "/img/rootfs",
      upper: "/s/upper",
      work: "/s/work",
      root: "/s/root",
      source: "lab:demo/master-1",
      argv: nspawnArgv(spec),
    });
    const lines = s.split("\n");
    const join = lines.findIndex((l) => l.includes("cgroup.procs"));
    const unshare = lines.findIndex((l) => l.startsWith("exec unshare --mount --cgroup"));
    expect(join).toBeGreaterThan(0);
    expect(unshare).toBeGreaterThan(join);
    // Quoting aside (the inner script is one quoted argument of unshare's sh -c):
    const flat = s.replaceAll("'\\''", "'").replaceAll("'", "");
    expect(flat).toContain(
      "mount -t overlay lab:demo/master-1 -o lowerdir=/img/rootfs,upperdir=/s/upper,workdir=/s/work /s/root",
    );
    expect(flat).toContain(
      "umount -l /sys/fs/cgroup/cpu; mount -t cgroup -o rw,relatime,cpu cgroup /sys/fs/cgroup/cpu",
    );
    expect(flat).toContain("mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified");
    expect(flat).toContain("exec systemd-nspawn --setenv=LAB_NODE=lab:demo/master-1");
  });
});

describe("nspawn cgroups", () => {
  const mounts = [
    "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0",
    "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0",
    "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0",
    "cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0",
    "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0",
    "cgroup /elsewhere cgroup rw,cpu 0 0",
  ].join("\n");

  it("finds every hierarchy under /sys/fs/cgroup with its controllers", () => {
    const h = parseHierarchies(mounts);
    expect(h.map((x) => x.path)).toEqual([
      "/sys/fs/cgroup/cpu",
      "/sys/fs/cgroup/memory",
      "/sys/fs/cgroup/systemd",
      "/sys/fs/cgroup/unified",
    ]);
    expect(h[2]!.controllers).toEqual(["name=systemd"]);
    expect(h[3]!.v2).toBe(true);
  });

  it("writes the topology's CPU quota and memory limit", () => {
    const [cpu, memory, systemd] = parseHierarchies(mounts);
    expect(limitFiles(cpu!, { cpus: 2, memoryMiB: 1536 })).toEqual([
      ["cpu.cfs_period_us", "100000"],
      ["cpu.cfs_quota_us", "200000"],
    ]);
    expect(limitFiles(memory!, { cpus: 2, memoryMiB: 1536 })).toEqual([
      ["memory.limit_in_bytes", String(1536 * 1024 * 1024)],
    ]);
    expect(limitFiles(systemd!, { cpus: 2, memoryMiB: 1536 })).toEqual([]);
  });
});

describe("nspawn guest files", () => {
  const base = {
    passwd:
      "root:x:0:0:root:/root:/bin/bash\nsystemd-network:x:998:998::/:/usr/sbin/nologin\nold:x:1000:1000::/home/old:/bin/sh\n",
    group: "root:x:0:\nshadow:x:42:\nold:x:1000:\n",
    shadow: "root:*:1:0:99999:7:::\n",
    gshadow: "root:*::\n",
  };

  it("the seed matches eth0 by name (a veth is no physical device to cloud-init) and keeps the rest", () => {
    const seed = nspawnSeed(seedInput);
    expect(seed["network-config"]).toMatch(/eth0:/);
    expect(seed["network-config"]).not.toMatch(/macaddress/);
    expect(seed["network-config"]).toContain("10.200.0.21/24");
    expect(seed["user-data"]).toContain("ssh-ed25519 AAAAclient");
    const files = upperFiles(seed);
    expect(files.find((f) => f.path === "var/lib/cloud/seed/nocloud/user-data")?.mode).toBe(0o600);
    expect(files.map((f) => f.path)).toContain("etc/systemd/system/lab-chrony.service.d/nspawn.conf");
  });

  it("chronyd inside never sets the clock it shares with the host", () => {
    const dropin = upperFiles(nspawnSeed(seedInput)).find((f) => f.path.endsWith("nspawn.conf"))!;
    expect(dropin.content).toMatch(/^ExecStart=$/m);
    expect(dropin.content).toMatch(/chronyd .*-x/);
  });

  it("direct configuration: user with key and sudo, host key, static address, cloud-init off", () => {
    expect(freeId(base.passwd, base.group)).toBe(1001);
    const files = directFiles(seedInput, base);
    const by = (p: string) => files.find((f) => f.path === p);
    expect(by("etc/passwd")!.content).toMatch(/^lab:x:1001:1001::\/home\/lab:\/bin\/bash$/m);
    expect(by("etc/passwd")!.content).toContain("old:x:1000");
    expect(by("etc/shadow")!.owner).toEqual([0, 42]);
    expect(by("etc/sudoers.d/90-lab-lab")!.content).toBe("lab ALL=(ALL) NOPASSWD:ALL\n");
    expect(by("home/lab/.ssh/authorized_keys")).toMatchObject({ mode: 0o600, owner: [1001, 1001] });
    expect(by("etc/ssh/ssh_host_ed25519_key")!.content.endsWith("\n")).toBe(true);
    expect(by("etc/systemd/network/10-lab-eth0.network")!.content).toMatch(
      /Name=eth0[\s\S]*Address=10.200.0.21\/24[\s\S]*Gateway=10.200.0.1/,
    );
    expect(by("etc/cloud/cloud-init.disabled")).toBeDefined();
    // A rerun over an upper layer that already has the user: still one line.
    const again = directFiles(seedInput, { ...base, passwd: by("etc/passwd")!.content });
    const passwd = again.find((f) => f.path === "etc/passwd")!.content;
    expect(passwd.match(/^lab:/gm)).toHaveLength(1);
    expect(passwd).toMatch(/^lab:x:1001:/m);
  });
});

describe("nspawn machines share the host's clock", () => {
  const p = labPlan("clk", { provider: { type: "nspawn" }, masters: { count: 1 }, workers: { count: 1 } });
  const machine = (name: string, shares: boolean): Machine => ({
    name,
    role: name.startsWith("master") ? "master" : "worker",
    address: "10.0.0.1",
    ...(shares ? { sharesHostClock: true } : {}),
    ssh: { host: "10.0.0.1", port: 22, user: "lab", privateKeyPath: "/k", hostKey: "ssh-ed25519 AAAA" },
  });
  const ctx = (shares: (n: string) => boolean) =>
    ({
      plan: p,
      machine: (n: string) => machine(n, shares(n)),
      // A round trip would throw: the step must not open a session or probe for these nodes.
      sessions: {
        get: () => {
          throw new Error("SSH session opened");
        },
      },
      facts: () => {
        throw new Error("node probed");
      },
    }) as unknown as StepContext;

  it("the clock step leaves them alone, without one SSH round trip", async () => {
    const out = await clockStep(ctx(() => true));
    expect(out).toEqual({
      changed: false,
      checkOnly: true,
      message: "all 2 nodes read this host's clock: nothing to set",
    });
  });

  it("join-nodes' runtime part starts early on workers and native machines, on a first join only", () => {
    const none = { applied: new Map<string, string>() };
    const joined = { applied: new Map([["join-nodes", "abc"]]) };
    expect(joinsEarly(machine("master-1", true), none)).toBe(true);
    expect(joinsEarly(machine("worker-1", false), none)).toBe(true);
    // A VM master under TCG is busy starting etcd and lab-server: it joins in its turn.
    expect(joinsEarly(machine("master-1", false), none)).toBe(false);
    expect(joinsEarly(machine("worker-1", true), joined)).toBe(false);
  });

  it("only machines with a clock of their own are set", () => {
    expect(ownClockMachines(ctx((n) => n === "master-1")).map((m) => m.name)).toEqual(["worker-1"]);
    expect(ownClockMachines(ctx(() => false)).map((m) => m.name)).toEqual(["master-1", "worker-1"]);
  });
});
