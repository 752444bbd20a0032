/**
 * The libvirt provisioner against the machine's real libvirtd (qemu:///system, TCG). No guest OS:
 * each domain boots a trivial multiboot kernel, assembled here, that writes one line to the serial
 * port and halts. That proves the whole path a real guest takes (pool, uploaded kernel/initrd,
 * qcow2 overlay on the base, seed disk, lab network, serial console file) in about a second.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openLibvirt, type LibvirtConnection } from "../../provisioners/libvirt/connection.ts";
import {
  LibvirtProvisioner,
  labDomains,
  type GuestImage,
  type LibvirtDeps,
} from "../../provisioners/libvirt/index.ts";
import {
  bridgeName,
  domainName,
  isLabObjectName,
  networkName,
  poolName,
  poolPath,
  volumes,
} from "../../provisioners/libvirt/names.ts";
import { generateEd25519 } from "../../provisioners/keys.ts";
import { connectJump, execOnJump } from "../../ssh/jump.ts";
import { LabError } from "../../topology/errors.ts";
import { startLoopbackHypervisor, type LoopbackHypervisor } from "../support/loopback-sshd.ts";
import { deriveLabCidr, plan, type Plan } from "../../topology/plan.ts";
import { formatIPv4, mustParseCidr } from "../../lib/ipv4.ts";
import { labSites } from "../../provisioners/libvirt/placement.ts";
import { RecordingReporter } from "../../topology/progress.ts";
import { LabFile } from "../../topology/schema.ts";
import { LabState } from "../../topology/state.ts";

const URI = "qemu:///system";
const GREETING = "lab-trivial-kernel-ok";

/** A 32-bit multiboot kernel: QEMU's -kernel loads it directly; it prints GREETING on COM1. */
const TRIVIAL_KERNEL = `
.text
.code32
.align 4
.long 0x1BADB002
.long 0
.long -(0x1BADB002)
.global _start
_start:
  mov $msg, %esi
  mov $0x3f8, %dx
1: lodsb
  test %al, %al
  jz 2f
  out %al, %dx
  jmp 1b
2: cli
  hlt
  jmp 2b
msg: .asciz "${GREETING}\\n"
`;

let work: string;
let home: string;
let lab: string;
let labPlan: Plan;
let conn: LibvirtConnection;
let image: GuestImage;

async function hostRoutes(): Promise<string[]> {
  const { stdout } = await execa("ip", ["-4", "-o", "route", "show"]);
  return stdout
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((c) => /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(c));
}

function deps(overrides: Partial<LibvirtDeps> = {}): LibvirtDeps {
  return {
    domainType: "qemu",
    image: async () => image,
    seed: async (_ctx, node) => {
      const f = join(work, `${node.name}-seed.img`);
      await writeFile(f, Buffer.alloc(64 * 1024));
      return f;
    },
    // "Ready" for the trivial kernel: its line arrived on the serial console file.
    waitForSsh: async (_ctx, m, file) => {
      for (let i = 0; i < 100; i++) {
        if (existsSync(file) && (await readFile(file, "utf8")).includes(GREETING)) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`${m.name}: no greeting on the console`);
    },
    ...overrides,
  };
}

async function leftovers(name: string): Promise<string[]> {
  const found: string[] = [];
  for (const d of (await labDomains(conn, name)).values()) found.push(`domain ${d.name}`);
  for (const d of await conn.listDomains())
    if (d.name.startsWith(`lab-${name}-`)) found.push(`domain ${d.name}`);
  if ((await conn.listNetworks()).some((n) => n.name === networkName(name))) found.push("network");
  if ((await conn.listPools()).includes(poolName(name))) found.push("pool");
  if (existsSync(poolPath(name))) found.push("pool directory");
  return found;
}

beforeAll(async () => {
  // Starts virtlogd/libvirtd when they are not running; says which package is missing otherwise.
  await execa(join(import.meta.dirname, "../../scripts/start-libvirtd.sh"));
  work = await mkdtemp(join(tmpdir(), "lab-libvirt-"));
  home = join(work, "home");
  lab = `lvt-${randomBytes(3).toString("hex")}`;
  await writeFile(join(work, "k.s"), TRIVIAL_KERNEL);
  await execa("as", ["--32", "-o", join(work, "k.o"), join(work, "k.s")]);
  await execa("ld", [
    "-m",
    "elf_i386",
    "-Ttext=0x100000",
    "-e",
    "_start",
    "-o",
    join(work, "k.elf"),
    join(work, "k.o"),
  ]);
  await execa("qemu-img", ["create", "-q", "-f", "qcow2", join(work, "base.qcow2"), "64M"]);
  await writeFile(join(work, "initrd.img"), "not an initrd\n");
  image = {
    key: "trivial-1",
    disk: join(work, "base.qcow2"),
    format: "qcow2",
    kernel: { path: join(work, "k.elf"), initrd: join(work, "initrd.img"), cmdline: "console=ttyS0" },
  };
  labPlan = plan(
    LabFile.parse({
      apiVersion: "lab/v1alpha1",
      kind: "Lab",
      metadata: { name: lab },
      spec: {
        provider: { type: "libvirt" },
        masters: { count: 1 },
        workers: { count: 1 },
        resources: { memory: "128Mi", disk: "256Mi" },
      },
    }),
    { taken: await hostRoutes() },
  );
  conn = await openLibvirt(URI);
});

afterAll(async () => {
  // Clean up even when a test failed halfway: the same path `lab down` takes.
  try {
    if (lab) {
      await new LibvirtProvisioner(deps()).destroy({
        labName: lab,
        state: new LabState(lab, home),
        reporter: new RecordingReporter(),
      });
    }
  } finally {
    await conn?.close();
    if (work) await rm(work, { recursive: true, force: true });
  }
});

describe("libvirt provisioner (real libvirtd)", () => {
  it("creates the lab's pool, network and one running domain per node, each marked as the lab's", async () => {
    const state = new LabState(lab, home);
    const reporter = new RecordingReporter();
    const machines = await new LibvirtProvisioner(deps()).create({ plan: labPlan, state, reporter });

    expect(machines.map((m) => [m.name, m.address])).toEqual(labPlan.nodes.map((n) => [n.name, n.address]));
    for (const m of machines) expect(m.ssh.hostKey).toMatch(/^ssh-ed25519 /);

    const doms = await labDomains(conn, lab);
    expect([...doms.keys()].sort()).toEqual(["master-1", "worker-1"]);
    for (const [node, d] of doms) {
      expect(d.name).toBe(domainName(lab, node));
      expect(d.state).toBe("running");
    }
    const { stdout: list } = await execa("virsh", ["-c", URI, "list", "--name"]);
    expect(list.split("\n")).toContain(domainName(lab, "master-1"));

    // The disk is an overlay on the uploaded base; the NIC has the planned MAC on the lab network.
    const disk = join(poolPath(lab), volumes.disk("master-1"));
    const { stdout: info } = await execa("qemu-img", ["info", "-U", "--output=json", disk]);
    expect(JSON.parse(info)["backing-filename"]).toBe(join(poolPath(lab), volumes.base));
    const { stdout: iflist } = await execa("virsh", ["-c", URI, "domiflist", domainName(lab, "master-1")]);
    expect(iflist).toContain(networkName(lab));
    expect(iflist).toContain(labPlan.nodes[0]!.mac);

    // The host holds the gateway address on the lab's bridge.
    const { stdout: addr } = await execa("ip", ["-4", "-o", "addr", "show", "dev", bridgeName(labPlan.id)]);
    expect(addr).toContain(`${labPlan.network.gateway}/${labPlan.network.prefix}`);

    expect(reporter.events.filter((e) => e.step === "vm.start" && e.state === "done")).toHaveLength(2);
  });

  it("is idempotent: a second create adopts the running domains and defines nothing", async () => {
    const reporter = new RecordingReporter();
    const before = await labDomains(conn, lab);
    await new LibvirtProvisioner(deps()).create({ plan: labPlan, state: new LabState(lab, home), reporter });
    expect(reporter.events.filter((e) => e.step === "vm.start").map((e) => [e.node, e.state])).toEqual([
      ["master-1", "skipped"],
      ["worker-1", "skipped"],
    ]);
    expect(reporter.events.some((e) => e.step === "libvirt.image" && e.state === "done")).toBe(true);
    const after = await labDomains(conn, lab);
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
  });

  it("does not overwrite the base image under running nodes when the image changed", async () => {
    const reporter = new RecordingReporter();
    const base = join(poolPath(lab), volumes.base);
    const before = (await execa("stat", ["-c", "%Y %s", base])).stdout;
    await new LibvirtProvisioner(deps({ image: async () => ({ ...image, key: "trivial-2" }) })).create({
      plan: labPlan,
      state: new LabState(lab, home),
      reporter,
    });
    expect(reporter.notices.some((n) => n.includes("keep the old image"))).toBe(true);
    expect((await execa("stat", ["-c", "%Y %s", base])).stdout).toBe(before);
  });

  it("reports each node's state, and a stopped domain as stopped", async () => {
    const p = new LibvirtProvisioner(deps());
    const ctx = { plan: labPlan, state: new LabState(lab, home), reporter: new RecordingReporter() };
    expect((await p.status(ctx)).map((s) => [s.name, s.state])).toEqual([
      ["master-1", "running"],
      ["worker-1", "running"],
    ]);
    await execa("virsh", ["-c", URI, "destroy", domainName(lab, "worker-1")]);
    expect((await p.status(ctx)).find((s) => s.name === "worker-1")?.state).toBe("stopped");
  });

  it("collects the serial consoles", async () => {
    const dir = join(work, "logs");
    const ctx = { plan: labPlan, state: new LabState(lab, home), reporter: new RecordingReporter() };
    await new LibvirtProvisioner(deps()).collectLogs(ctx, dir);
    expect(await readFile(join(dir, "master-1.console.log"), "utf8")).toContain(GREETING);
    // `lab logs NODE --console` reads it from the lab's state, as for qemu labs.
    expect(await readFile(ctx.state.path("vms", "master-1", "console.log"), "utf8")).toContain(GREETING);
  });

  it("destroys everything without the lab's state, and a second destroy is a no-op", async () => {
    const p = new LibvirtProvisioner(deps());
    const stateless = new LabState(lab, join(work, "empty-home"));
    await p.destroy({ labName: lab, state: stateless, reporter: new RecordingReporter() });
    expect(await leftovers(lab)).toEqual([]);
    await p.destroy({ labName: lab, state: stateless, reporter: new RecordingReporter() });
    expect(await leftovers(lab)).toEqual([]);
  });

  it("cleans up after a failed up", async () => {
    const p = new LibvirtProvisioner(
      deps({
        seed: async (_ctx, node) => {
          if (node.name === "worker-1") throw new Error("seed failed on purpose");
          const f = join(work, `${node.name}-seed.img`);
          await writeFile(f, Buffer.alloc(4096));
          return f;
        },
      }),
    );
    const state = new LabState(lab, home);
    await expect(p.create({ plan: labPlan, state, reporter: new RecordingReporter() })).rejects.toThrow(
      "seed failed on purpose",
    );
    expect([...(await labDomains(conn, lab)).keys()]).toEqual(["master-1"]);
    await p.destroy({ labName: lab, state, reporter: new RecordingReporter() });
    expect(await leftovers(lab)).toEqual([]);
  });

  it("leaves alone another lab whose domain names start like this lab's", async () => {
    // Lab "x-y"'s domains are named lab-x-y-*: a name prefix would take them for lab "x"'s.
    const other = `${lab}-y`;
    const otherPlan = { ...labPlan, lab: other, id: "0ther0" };
    const p = new LibvirtProvisioner(deps());
    try {
      await p.create({
        plan: otherPlan,
        state: new LabState(other, home),
        reporter: new RecordingReporter(),
      });
      await p.destroy({ labName: lab, state: new LabState(lab, home), reporter: new RecordingReporter() });
      expect([...(await labDomains(conn, other)).keys()].sort()).toEqual(["master-1", "worker-1"]);
    } finally {
      await p.destroy({
        labName: other,
        state: new LabState(other, home),
        reporter: new RecordingReporter(),
      });
    }
    expect(await leftovers(other)).toEqual([]);
  });
});

describe("unreachable libvirt", () => {
  it("is one clear error naming the URI and the fix", async () => {
    const err = await openLibvirt("qemu+tcp://127.0.0.1:1/system").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LabError);
    expect((err as LabError).code).toBe("LIBVIRT_UNREACHABLE");
    expect((err as LabError).message).toContain("qemu+tcp://127.0.0.1:1/system");
    expect((err as LabError).message).toContain("Connection refused");
  });

  it("for a local URI, names the package and how to start libvirtd, and creates nothing", async () => {
    const uri = `qemu:///system?socket=${join(work, "no-such-libvirt-sock")}`;
    const name = `lvu-${randomBytes(3).toString("hex")}`;
    const p = new LibvirtProvisioner(deps());
    const unreachablePlan: Plan = { ...labPlan, lab: name, provider: { type: "libvirt", uri } };
    const err = await p
      .create({ plan: unreachablePlan, state: new LabState(name, home), reporter: new RecordingReporter() })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LabError);
    expect((err as LabError).code).toBe("LIBVIRT_UNREACHABLE");
    expect((err as LabError).fix).toContain("libvirt-daemon-system");
    expect((err as LabError).fix).toContain("libvirtd -d");
    expect(await leftovers(name)).toEqual([]);
  });

  it("refuses a remote hypervisor that is not pinned, or not reachable through SSH, before creating anything", async () => {
    const create = (uri: string) =>
      new LibvirtProvisioner(deps())
        .create({
          plan: { ...labPlan, provider: { type: "libvirt", uri } },
          state: new LabState(lab, home),
          reporter: new RecordingReporter(),
        })
        .then(
          () => new LabError({ code: "NO_ERROR", what: "created" }),
          (e: unknown) => e as LabError,
        );
    const unknown = await create(
      `qemu+ssh://root@hv.invalid/system?known_hosts=${join(work, "empty_known_hosts")}`,
    );
    expect(unknown.code).toBe("HYPERVISOR_HOST_KEY_UNKNOWN");
    expect(unknown.where).toBe("spec.provider.uri");
    expect((await create("qemu+ssh://root@hv.invalid/system?no_verify=1")).code).toBe(
      "HYPERVISOR_HOST_KEY_UNVERIFIED",
    );
    expect((await create("qemu+tcp://hv.invalid/system")).code).toBe("LIBVIRT_REMOTE_UNSUPPORTED");
  });

  it("does not stop `lab down` of a lab that never used libvirt", async () => {
    const p = new LibvirtProvisioner(
      deps({ connect: () => openLibvirt(`qemu:///system?socket=${join(work, "no-such-libvirt-sock")}`) }),
    );
    const name = `lvn-${randomBytes(3).toString("hex")}`;
    await p.destroy({ labName: name, state: new LabState(name, home), reporter: new RecordingReporter() });
  });

  it("lets `lab down` finish after an `up` that never reached libvirtd", async () => {
    const uri = `qemu:///system?socket=${join(work, "no-such-libvirt-sock")}`;
    const name = `lvf-${randomBytes(3).toString("hex")}`;
    const p = new LibvirtProvisioner(deps());
    const failedPlan: Plan = { ...labPlan, lab: name, provider: { type: "libvirt", uri } };
    const state = new LabState(name, home);
    await expect(p.create({ plan: failedPlan, state, reporter: new RecordingReporter() })).rejects.toThrow();
    const reporter = new RecordingReporter();
    await p.destroy({ labName: name, plan: failedPlan, state, reporter });
    expect(reporter.notices.join("\n")).toContain("never created anything");
  });

  it("fails `lab down` of a lab that used libvirtd while it is unreachable, instead of claiming success", async () => {
    const uri = `qemu:///system?socket=${join(work, "no-such-libvirt-sock")}`;
    const p = new LibvirtProvisioner(deps());
    const name = `lvd-${randomBytes(3).toString("hex")}`;
    const state = new LabState(name, home);
    await state.writeJson("libvirt.json", { uri });
    const downPlan: Plan = { ...labPlan, lab: name, provider: { type: "libvirt", uri } };
    await expect(
      p.destroy({ labName: name, plan: downPlan, state, reporter: new RecordingReporter() }),
    ).rejects.toMatchObject({ code: "LIBVIRT_UNREACHABLE" });
  });
});

describe("a remote hypervisor over qemu+ssh (this machine's libvirtd behind a loopback sshd)", () => {
  let hv: LoopbackHypervisor | undefined;
  let name = "";
  let remotePlan: Plan;
  /** Ready when the console, read on the hypervisor through the pinned jump, shows the greeting. */
  const remoteDeps = () =>
    deps({
      waitForSsh: async (ctx, m) => {
        if (!m.ssh.jump) throw new Error(`${m.name} has no SSH jump`);
        const j = await connectJump(m.ssh.jump);
        try {
          const file = join(poolPath(ctx.plan.lab), volumes.console(m.name));
          for (let i = 0; i < 100; i++) {
            if ((await execOnJump(j, `cat ${file} 2>/dev/null`)).stdout.includes(GREETING)) return;
            await new Promise((r) => setTimeout(r, 100));
          }
        } finally {
          j.close();
        }
        throw new Error(`${m.name}: no greeting on the console`);
      },
    });

  beforeAll(async () => {
    hv = await startLoopbackHypervisor();
    name = `lvr-${randomBytes(3).toString("hex")}`;
    // One node: every virsh call is an SSH login to the "hypervisor" (~0.6 s here).
    remotePlan = {
      ...labPlan,
      nodes: labPlan.nodes.slice(0, 1),
      lab: name,
      id: randomBytes(3).toString("hex"),
      provider: { type: "libvirt", uri: hv.uri },
    };
  });
  afterAll(async () => {
    try {
      if (hv && name)
        await new LibvirtProvisioner(remoteDeps()).destroy({
          labName: name,
          state: new LabState(name, home),
          reporter: new RecordingReporter(),
        });
    } finally {
      await hv?.stop();
    }
  });

  it("creates the lab through the URI and hands over machines behind the pinned hypervisor jump", async () => {
    const reporter = new RecordingReporter();
    const state = new LabState(name, home);
    const machines = await new LibvirtProvisioner(remoteDeps()).create({ plan: remotePlan, state, reporter });
    for (const m of machines) {
      expect(m.ssh.jump).toMatchObject({ host: "127.0.0.1", port: hv!.port, user: "root" });
      expect(m.ssh.jump?.hostKey).toBe(hv!.hostPublicKey.split(/\s+/).slice(0, 2).join(" "));
    }
    expect([...(await labDomains(conn, name)).values()].map((d) => d.state)).toEqual(["running"]);
    // Files went in through the pool API: the overlay's backing file is the uploaded base volume.
    const { stdout: info } = await execa("qemu-img", [
      "info",
      "-U",
      "--output=json",
      join(poolPath(name), volumes.disk("master-1")),
    ]);
    expect(JSON.parse(info)["backing-filename"]).toBe(join(poolPath(name), volumes.base));
    // libvirt's own connection went through the sshd (virt-ssh-helper on the "hypervisor").
    expect(await hv!.log()).toMatch(/Accepted publickey for root/);
    // `lab ssh` pins the hypervisor through the lab's known_hosts.
    expect(await readFile(state.path("ssh", "known_hosts"), "utf8")).toContain(
      `[127.0.0.1]:${hv!.port} ssh-ed25519 `,
    );
    expect(
      await new LibvirtProvisioner(remoteDeps()).status({ plan: remotePlan, state, reporter }),
    ).toMatchObject([{ name: "master-1", state: "running" }]);
  });

  it("refuses a hypervisor that presents another host key", async () => {
    const other = await generateEd25519("someone-else");
    const pin = `SHA256:${createHash("sha256")
      .update(Buffer.from(other.publicKey.split(/\s+/)[1]!, "base64"))
      .digest("base64")
      .replace(/=+$/, "")}`;
    const err = await new LibvirtProvisioner(remoteDeps())
      .create({
        plan: { ...remotePlan, provider: { type: "libvirt", uri: hv!.uri, hostKey: pin } },
        state: new LabState(name, home),
        reporter: new RecordingReporter(),
      })
      .then(
        () => undefined,
        (e: unknown) => e as LabError,
      );
    expect(err?.code).toBe("HOST_KEY_MISMATCH");
  });

  it("lab down removes domains, volumes, network and pool on the hypervisor", async () => {
    await new LibvirtProvisioner(remoteDeps()).destroy({
      labName: name,
      state: new LabState(name, home),
      reporter: new RecordingReporter(),
    });
    expect(await leftovers(name)).toEqual([]);
  });

  it("an unreachable qemu+ssh hypervisor is one clear error and leaves nothing", async () => {
    const dead = `lvx-${randomBytes(3).toString("hex")}`;
    const closed = hv!.uri.replace(`:${hv!.port}/`, ":1/");
    // The closed port needs its own known_hosts entry, or the missing pin is reported first.
    const kh = join(hv!.dir, "known_hosts_closed");
    await writeFile(kh, `[127.0.0.1]:1 ${hv!.hostPublicKey.split(/\s+/).slice(0, 2).join(" ")}\n`);
    const uri = closed.replace(encodeURIComponent(hv!.knownHostsPath), encodeURIComponent(kh));
    const p = new LibvirtProvisioner(remoteDeps());
    const state = new LabState(dead, home);
    const err = await p
      .create({
        plan: { ...remotePlan, lab: dead, provider: { type: "libvirt", uri } },
        state,
        reporter: new RecordingReporter(),
      })
      .then(
        () => undefined,
        (e: unknown) => e as LabError,
      );
    expect(err?.code).toBe("LIBVIRT_UNREACHABLE");
    expect(err?.message).toContain("127.0.0.1:1");
    expect(err?.fix).toContain("libvirt group");
    expect(await leftovers(dead)).toEqual([]);
    await p.destroy({ labName: dead, state, reporter: new RecordingReporter() });
  });
});

describe("a lab on two hypervisors (two URIs to this libvirtd) joined by a host bridge", () => {
  // A second URI to the same daemon: different to lab, so it must get its own pool and network.
  const URI2 = "qemu:///system?socket=/var/run/libvirt/libvirt-sock";
  let name = "";
  let br = "";
  let cidr = "";
  const multiPlan = (over: { bridge?: string; cidr?: string; workerUri?: string } = {}) =>
    plan(
      LabFile.parse({
        apiVersion: "lab/v1alpha1",
        kind: "Lab",
        metadata: { name },
        spec: {
          provider: { type: "libvirt", network: { bridge: over.bridge ?? br } },
          network: { cidr: over.cidr ?? cidr },
          nodes: [
            { name: "master-1", role: "master" },
            { name: "worker-1", role: "worker", uri: over.workerUri ?? URI2 },
          ],
          resources: { memory: "128Mi", disk: "256Mi" },
        },
      }),
    );
  /** Everything of the lab on the daemon, under any hypervisor's names. */
  const everything = async () => {
    const found = await leftovers(name);
    for (const n of await conn.listNetworks())
      if (isLabObjectName(name, n.name)) found.push(`network ${n.name}`);
    for (const p of await conn.listPools()) if (isLabObjectName(name, p)) found.push(`pool ${p}`);
    return [...new Set(found)];
  };
  const ports = async () =>
    (
      JSON.parse((await execa("ip", ["-j", "link", "show", "master", br])).stdout || "[]") as {
        ifname: string;
      }[]
    ).length;
  const destroy = () =>
    new LibvirtProvisioner(deps()).destroy({
      labName: name,
      state: new LabState(name, home),
      reporter: new RecordingReporter(),
    });

  beforeAll(async () => {
    name = `lvm-${randomBytes(3).toString("hex")}`;
    br = `lbi${randomBytes(3).toString("hex")}`;
    cidr = deriveLabCidr(`multi-${name}`, await hostRoutes());
    const c = mustParseCidr(cidr);
    await execa("ip", ["link", "add", br, "type", "bridge"]);
    await execa("ip", ["addr", "add", `${formatIPv4(c.base + 1)}/${c.prefix}`, "dev", br]);
    await execa("ip", ["link", "set", br, "up"]);
  });
  afterAll(async () => {
    try {
      if (name) await destroy();
    } finally {
      if (br) await execa("ip", ["link", "del", br], { reject: false });
    }
  });

  const createError = (p: Plan) =>
    new LibvirtProvisioner(deps())
      .create({ plan: p, state: new LabState(name, home), reporter: new RecordingReporter() })
      .then(
        () => new LabError({ code: "NO_ERROR", what: "created" }),
        (e: unknown) => e as LabError,
      );

  it("refuses a missing bridge, a subnet the host is not on, and an unreachable URI, creating nothing anywhere", async () => {
    const missing = await createError(multiPlan({ bridge: "nosuchbr0" }));
    expect(missing.code).toBe("LIBVIRT_BRIDGE_MISSING");
    expect(missing.what).toContain("has no interface nosuchbr0");
    const subnet = await createError(multiPlan({ cidr: "10.254.254.0/24" }));
    expect(subnet.code).toBe("LIBVIRT_BRIDGE_SUBNET");
    expect(subnet.fix).toContain(`${br} holds ${formatIPv4(mustParseCidr(cidr).base + 1)}`);
    const dead = `qemu:///system?socket=${join(work, "no-such-libvirt-sock")}`;
    const unreachable = await createError(multiPlan({ workerUri: dead }));
    expect(unreachable.code).toBe("LIBVIRT_UNREACHABLE");
    expect(unreachable.where).toBe("spec.nodes[].uri of node worker-1");
    expect(unreachable.what).toContain(dead);
    expect(await everything()).toEqual([]);
    await destroy();
  });

  it("creates each node on its own hypervisor, with a pool and a bridge-mode network per hypervisor", async () => {
    const p = multiPlan();
    const state = new LabState(name, home);
    const machines = await new LibvirtProvisioner(deps()).create({
      plan: p,
      state,
      reporter: new RecordingReporter(),
    });
    expect(machines.map((m) => m.name)).toEqual(["master-1", "worker-1"]);
    const [site1, site2] = labSites(p);
    for (const [site, node] of [
      [site1!, "master-1"],
      [site2!, "worker-1"],
    ] as const) {
      const vols = await conn.listVolumes(poolName(name, site.tag));
      expect(vols).toContain(volumes.base);
      expect(vols).toContain(volumes.disk(node));
      expect(vols).not.toContain(volumes.disk(node === "master-1" ? "worker-1" : "master-1"));
      const { stdout: iflist } = await execa("virsh", ["-c", URI, "domiflist", domainName(name, node)]);
      expect(iflist).toContain(networkName(name, site.tag));
      const { stdout: net } = await execa("virsh", ["-c", URI, "net-dumpxml", networkName(name, site.tag)]);
      expect(net).toContain(`<bridge name='${br}'/>`);
    }
    expect(await ports()).toBe(2);
    const ctx = { plan: p, state, reporter: new RecordingReporter() };
    expect((await new LibvirtProvisioner(deps()).status(ctx)).map((s) => [s.name, s.state])).toEqual([
      ["master-1", "running"],
      ["worker-1", "running"],
    ]);
    const again = new RecordingReporter();
    await new LibvirtProvisioner(deps()).create({ ...ctx, reporter: again });
    expect(again.events.filter((e) => e.step === "vm.start").map((e) => [e.node, e.state])).toEqual([
      ["master-1", "skipped"],
      ["worker-1", "skipped"],
    ]);
  });

  it("removes both hypervisors' domains, pools and networks, also after a failed up", async () => {
    await destroy();
    expect(await everything()).toEqual([]);
    expect(await ports()).toBe(0);
    const failing = new LibvirtProvisioner(
      deps({
        seed: async (_ctx, node) => {
          if (node.name === "worker-1") throw new Error("seed failed on purpose");
          const f = join(work, `${node.name}-seed.img`);
          await writeFile(f, Buffer.alloc(4096));
          return f;
        },
      }),
    );
    const state = new LabState(name, home);
    await expect(
      failing.create({ plan: multiPlan(), state, reporter: new RecordingReporter() }),
    ).rejects.toThrow("seed failed on purpose");
    expect([...(await labDomains(conn, name)).keys()]).toEqual(["master-1"]);
    await destroy();
    expect(await everything()).toEqual([]);
  });
});
