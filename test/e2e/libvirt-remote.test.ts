/**
 * A libvirt lab on a "remote" hypervisor, end to end through the real `lab` process: the URI is
 * qemu+ssh to this machine's libvirtd through a real sshd on loopback (its own host key, pinned
 * through known_hosts). A 1-master + 1-worker lab goes through the full `lab up`; `lab` reaches the
 * machines and the cluster's API only through the hypervisor jump (sshd's log shows each forwarded
 * connection: port 22 per node, the API port for /readyz and wait-ready), with pinned host keys;
 * stock kubectl lists both nodes Ready through `lab tunnel` and `lab kubeconfig`; `lab down`
 * removes everything.
 *
 * What this does not prove: the hypervisor is this machine, so its lab bridge would also be
 * reachable directly; the test asserts the jump was used, not that nothing else could work
 * (test/integration/lab-dialer.test.ts proves that with a target only the jump can reach).
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLoopbackHypervisor, type LoopbackHypervisor } from "../support/loopback-sshd.ts";
import { imageCache, jsonLines, labBin, labTopology, libvirtLeftovers, repo } from "./helpers.ts";

const name = `lvr${process.pid % 100000}`;
let home = "";
let dir = "";
let hv: LoopbackHypervisor | undefined;

const env = () => ({ ...process.env, LAB_HOME: home, LAB_IMAGE_CACHE: imageCache, LAB_SSH_TIMEOUT: "420" });
const lab = (args: string[], opts: { reject?: boolean } = {}) =>
  execa(process.execPath, [labBin, ...args], { cwd: dir, env: env(), reject: opts.reject ?? true });

async function leftovers(): Promise<string[]> {
  const found = await libvirtLeftovers(name);
  if (existsSync(join(home, "labs", name))) found.push(`state ${join(home, "labs", name)}`);
  return found;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lab-e2e-libvirt-remote-"));
  home = join(dir, "home");
  await execa(join(repo, "scripts/start-libvirtd.sh"));
  hv = await startLoopbackHypervisor();
  await writeFile(
    join(dir, "lab.yaml"),
    labTopology({
      provider: { type: "libvirt", uri: hv.uri },
      resources: { cpus: 1, memory: "1Gi", disk: "10Gi" },
      masters: 1,
      workers: 1,
      name,
    }),
  );
});

let tunnel: ResultPromise | undefined;

afterAll(async () => {
  tunnel?.kill("SIGTERM");
  await tunnel?.catch(() => undefined);
  try {
    if (dir) await lab(["down", name], { reject: false });
  } finally {
    await hv?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }
});

describe("a lab on a remote hypervisor (qemu+ssh through a loopback sshd, TCG), full bootstrap", () => {
  it("the full lab up bootstraps both nodes to Ready, reaching machines and API through the jump", async () => {
    const t0 = Date.now();
    const r = await lab(["--json", "up", "--wait", "10m"], { reject: false });
    if (r.exitCode !== 0) throw new Error(`lab up failed (exit ${r.exitCode}):\n${r.stdout}\n${r.stderr}`);
    const events = jsonLines(r.stdout);
    const ready = events.filter((e) => e.step === "vm.ssh-ready" && e.state === "done");
    expect(ready.map((e) => e.node).sort()).toEqual(["master-1", "worker-1"]);
    const waitReady = events.find((e) => e.step === "bootstrap.wait-ready" && e.state !== "start");
    expect(waitReady).toMatchObject({ state: "done", message: "2 nodes Ready" });
    const steps = events
      .filter(
        (e) => typeof e.step === "string" && /^bootstrap\.[a-z-]+$/.test(e.step) && e.elapsedMs !== undefined,
      )
      .map((e) => `${String(e.step).slice(10)} ${Math.round(Number(e.elapsedMs) / 1000)} s`);
    console.log(
      `remote libvirt lab up (1 master + 1 worker, full bootstrap, TCG) took ${((Date.now() - t0) / 1000).toFixed(1)} s: ${steps.join(", ")}`,
    );

    const machines = JSON.parse(await readFile(join(home, "labs", name, "machines.json"), "utf8")) as {
      name: string;
      address: string;
      ssh: { jump?: { host: string; port: number } };
    }[];
    for (const m of machines) expect(m.ssh.jump).toMatchObject({ host: "127.0.0.1", port: hv!.port });
    // `lab ssh` (OpenSSH with a ProxyCommand through the hypervisor, everything pinned).
    for (const m of machines) {
      const h = await lab(["ssh", m.name, "--", "hostname"]);
      expect(h.stdout.trim()).toBe(m.name);
    }
    const worker = machines.find((m) => m.name === "worker-1")!;
    const ping = await lab(["ssh", "master-1", "--", "ping", "-c", "1", "-W", "5", worker.address]);
    expect(ping.stdout).toContain("1 received");
    // Every machine, and the API (/readyz on the master, wait-ready on the VIP), through the hypervisor's sshd.
    const log = await hv!.log();
    for (const m of machines) expect(log).toContain(`target ${m.address} port 22`);
    const master = machines.find((m) => m.name === "master-1")!;
    expect(log).toContain(`target ${master.address} port 6443`);
    const plan = JSON.parse(await readFile(join(home, "labs", name, "plan.json"), "utf8")) as {
      network: { vip: string };
    };
    expect(log).toContain(`target ${plan.network.vip} port 6443`);
  });

  it("stock kubectl lists both nodes Ready through lab tunnel and lab kubeconfig", async () => {
    const t0 = Date.now();
    tunnel = execa(process.execPath, [labBin, "--json", "tunnel", name], {
      cwd: dir,
      env: env(),
      reject: false,
    });
    const first = await new Promise<string>((resolve, reject) => {
      let buf = "";
      tunnel!.stdout!.on("data", (d: Buffer) => {
        buf += d.toString();
        const nl = buf.indexOf("\n");
        if (nl >= 0) resolve(buf.slice(0, nl));
      });
      void tunnel!.then((r) => reject(new Error(`lab tunnel exited ${r.exitCode}: ${r.stderr}`)));
    });
    const t = JSON.parse(first) as { port: number; server: string; via: string };
    expect(t.server).toBe(`https://127.0.0.1:${t.port}`);
    expect(t.via).toBe(`root@127.0.0.1:${hv!.port}`);
    const kc = join(dir, "kubeconfig");
    const written = JSON.parse((await lab(["--json", "kubeconfig", name, "-o", kc])).stdout) as {
      server: string;
      tunnel?: { port: number };
    };
    expect(written).toMatchObject({ server: t.server, tunnel: { port: t.port } });
    const nodes = JSON.parse(
      (await execa("kubectl", ["--kubeconfig", kc, "get", "nodes", "-o", "json"], { timeout: 60_000 }))
        .stdout,
    ) as {
      items: { metadata: { name: string }; status: { conditions: { type: string; status: string }[] } }[];
    };
    expect(
      nodes.items.map((n) => [n.metadata.name, n.status.conditions.find((c) => c.type === "Ready")?.status]),
    ).toEqual([
      ["master-1", "True"],
      ["worker-1", "True"],
    ]);
    console.log(`kubectl get nodes through lab tunnel: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    tunnel.kill("SIGINT");
    expect((await tunnel).exitCode).toBe(0);
    tunnel = undefined;
  });

  it("lab status shows both running and Ready (API through the jump); a second up adopts them", async () => {
    const t0 = Date.now();
    const status = JSON.parse((await lab(["--json", "status", name])).stdout) as {
      machines: { name: string; state: string }[];
      api?: { via?: string; nodes?: { ready: string[] } };
    };
    // Node readiness from the API, asked through the hypervisor's jump.
    expect(status.api).toMatchObject({
      via: `root@127.0.0.1:${hv!.port}`,
      nodes: { ready: ["master-1", "worker-1"] },
    });
    expect(status.machines.map((m) => [m.name, m.state])).toEqual([
      ["master-1", "running"],
      ["worker-1", "running"],
    ]);
    const again = jsonLines((await lab(["--json", "up", "--machines-only"])).stdout);
    expect(again.filter((e) => e.step === "vm.start").map((e) => [e.node, e.state])).toEqual([
      ["master-1", "skipped"],
      ["worker-1", "skipped"],
    ]);
    console.log(`lab status + second up --machines-only: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });

  it("lab down removes domains, volumes, network, pool and files on the hypervisor", async () => {
    const t0 = Date.now();
    await lab(["down", name]);
    console.log(`lab down: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    expect(await leftovers()).toEqual([]);
  });
});
