/**
 * Provider nspawn for real (root, systemd-container): the provisioner contract; the default
 * topology as nspawn machines (examples/nspawn.yaml) through the real `lab` process up to all nodes
 * Ready, with the topology's limits in the machines' cgroups, then the cluster's promises that need
 * no VM, as test/e2e/cluster.test.ts runs them on QEMU (numbered alike; shared code in
 * cluster-helpers.ts): a Deployment over both workers, DNS and load balancing, logs and exec,
 * scaling with endpoints following, a killed container and a deleted pod healed, a rolling update
 * and undo without a failed request, an OOMKilled pod, a worker powered off (every process of the
 * machine SIGKILLed) whose pods move, and a `lab down` that leaves nothing; two nspawn labs side by
 * side; and `lab down` after `kill -9` of `lab up` (and of a machine's systemd-nspawn, whose init
 * keeps running). The HA scenarios (VIP, master power-off) stay on QEMU in cluster.test.ts.
 * Run: npx vitest run --project e2e test/e2e/nspawn.test.ts
 */
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import type { V1Node, V1Pod, V1Service } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labCgroupPids } from "../../provisioners/nspawn/cgroups.ts";
import { findNspawnProcesses, nspawnProvisioner, powerOffMachine } from "../../provisioners/nspawn/index.ts";
import { KubectlWorkload } from "./chaos.ts";
import { clusterOps, nodeReady, nspawnOnNode, running } from "./cluster-helpers.ts";
import { E2eLab, jsonLines, nspawnTopology, repo, Timings, until } from "./helpers.ts";
import { hostLeftovers, provisionerContract } from "./provisioner-contract.ts";

const timings = new Timings(
  "nspawn",
  "e2e nspawn (examples/nspawn.yaml: 3 masters + 2 workers as nspawn machines)",
);
afterAll(async () => {
  await timings.write().catch(() => undefined);
});

provisionerContract("nspawn", async () => ({
  provisioner: nspawnProvisioner,
  topology: nspawnTopology(1, 1),
}));

/** Everything of lab `l` on this host: the e2e helper's list plus cgroups, machine netns and mounts. */
async function allLeftovers(l: E2eLab): Promise<string[]> {
  return [...new Set([...(await l.leftovers()), ...(await hostLeftovers(l.name))])];
}

/** `sh` on a node as root; the script travels base64-encoded so no shell layer re-quotes it. */
const onNodeOf = (l: E2eLab, node: string, script: string) =>
  l.lab([
    "ssh",
    "--lab",
    l.name,
    node,
    "--",
    `echo ${Buffer.from(script).toString("base64")} | base64 -d | sudo sh`,
  ]);

/** The host pid of a machine's systemd-nspawn (its argv carries lab:LAB/NODE). */
async function nspawnPid(lab: string, node: string): Promise<number | undefined> {
  const found = (await findNspawnProcesses(lab)).filter((p) => p.node === node);
  if (found.length > 1)
    throw new Error(`expected one systemd-nspawn for ${node}, found ${found.map((p) => p.pid).join(",")}`);
  return found[0]?.pid;
}

describe("the default topology on nspawn machines (examples/nspawn.yaml)", () => {
  let l: E2eLab;
  let c: ReturnType<typeof clusterOps>;
  const app = (f: string) => join(repo, "examples/apps", f);
  let clusterIP = "";
  const serviceDns = "sample.default.svc.cluster.local";

  beforeAll(async () => {
    const text = readFileSync(join(repo, "examples/nspawn.yaml"), "utf8");
    l = await E2eLab.create("ns", text.replace(/^(\s*name:\s*)\S+\s*$/m, "$1NAME"));
    c = clusterOps(l, nspawnOnNode(l));
    const t0 = Date.now();
    const up = await l.lab(["--json", "up", "--wait", "10m"], { reject: false });
    timings.add("lab up to 5 nodes Ready", Date.now() - t0);
    for (const e of jsonLines(up.stdout))
      if (
        typeof e.elapsedMs === "number" &&
        e.state === "done" &&
        (String(e.step).startsWith("bootstrap.") || String(e.step) === "image")
      )
        timings.add(`  ${String(e.step)}`, e.elapsedMs);
    if (up.exitCode !== 0) throw new Error(`lab up failed (exit ${up.exitCode}): ${up.stderr}`);
    await l.lab(["kubeconfig", l.name, "-o", l.kubeconfig]);
  });

  afterAll(async () => {
    await l?.remove();
  });

  it("all 5 nodes Ready; each machine under the topology's memory and CPU limits; no clock step", async () => {
    const nodes = await c.items<V1Node>(["get", "nodes"]);
    expect(nodes.map((n) => n.metadata!.name).sort()).toEqual([
      "master-1",
      "master-2",
      "master-3",
      "worker-1",
      "worker-2",
    ]);
    for (const n of nodes) expect(nodeReady(n)).toBe("True");
    const limit = (node: string, file: string) =>
      readFile(`/sys/fs/cgroup/${file.split(".")[0]}/lab-nspawn/${l.name}/${node}/${file}`, "utf8").then(
        (s) => Number(s.trim()),
      );
    expect(await limit("master-1", "memory.limit_in_bytes")).toBe(2048 * 1024 * 1024);
    expect(await limit("worker-1", "memory.limit_in_bytes")).toBe(1536 * 1024 * 1024);
    expect(await limit("worker-2", "cpu.cfs_quota_us")).toBe(100_000);
    // Inside, the machine sees its own cgroup as the root and containerd's pods below it.
    const inside = await c.onNode("worker-1", "cat /proc/1/cgroup | grep memory");
    expect(inside.stdout.trim()).toMatch(/memory:\/$/);
    // The machines read this host's clock: no chrony of lab's runs on them.
    const chrony = await c.onNode("master-1", "systemctl is-active lab-chrony.service || true");
    expect(chrony.stdout.trim()).not.toBe("active");
  });

  it("1. a Deployment rolls out over both workers; its Service's endpoints are the pods", async () => {
    await timings.time("1. apply + rollout status (3 replicas)", async () => {
      await l.kubectl(["apply", "-f", app("sample.yaml"), "-f", app("client.yaml")]);
      await c.rolloutStatus("sample", "5m");
    });
    const pods = running(await c.samplePods());
    expect(pods).toHaveLength(3);
    expect([...new Set(pods.map((p) => p.spec!.nodeName))].sort()).toEqual(["worker-1", "worker-2"]);
    const svc = await l.kubectlJson<V1Service>(["get", "service", "sample"]);
    clusterIP = svc.spec!.clusterIP!;
    expect(clusterIP).toMatch(/^10\.96\./);
    expect(await c.endpointIPs("sample")).toEqual(pods.map((p) => p.status!.podIP).sort());
    await until("client pod Running", 180_000, async () =>
      (await l.kubectlJson<V1Pod>(["get", "pod", "client"])).status?.phase === "Running" ? true : undefined,
    );
  });

  it("2. service discovery and load balancing: the DNS name answers; 150 requests reach all 3 replicas", async () => {
    const names = running(await c.samplePods())
      .map((p) => p.metadata!.name!)
      .sort();
    const viaIP = await timings.time("2. 150 requests to the ClusterIP", () =>
      c.requests(`http://${clusterIP}/`, 150),
    );
    expect(viaIP.failed).toBe(0);
    expect([...viaIP.by.keys()].sort()).toEqual(names);
    for (const n of names) expect(viaIP.by.get(n)).toBeGreaterThan(15);
    const lookup = await c.inPod(
      "client",
      `nslookup ${serviceDns} 2>&1; echo; timeout 3 wget -q -O - http://sample/`,
      { reject: false },
    );
    expect(lookup.stdout, "the Service's DNS name resolves to its ClusterIP from a pod").toContain(clusterIP);
    expect(names, "the short name answers with a replica's pod name").toContain(
      lookup.stdout.trim().split("\n").at(-1),
    );
  });

  it("2b. kubectl logs and exec reach a pod through lab-server and lab-agent", async () => {
    const pod = running(await c.samplePods())[0]!.metadata!.name!;
    const logs = await l.kubectl(["logs", pod, "--tail=5"], { reject: false });
    expect(logs.exitCode, logs.stderr).toBe(0);
    const exit3 = await l.kubectl(["exec", "client", "--", "sh", "-c", "echo out; exit 3"], {
      reject: false,
    });
    expect(exit3.stdout).toBe("out");
    expect(exit3.exitCode).toBe(3);
    const cat = await l.kubectl(["exec", "-i", "client", "--", "cat"], { input: "hi\n" });
    expect(cat.stdout).toBe("hi");
  });

  it("3. horizontal scaling: 6 replicas, then 2; the Service's endpoints follow; a deleted pod is replaced", async () => {
    for (const replicas of [6, 2]) {
      const t0 = Date.now();
      await l.kubectl(["scale", "deployment/sample", `--replicas=${replicas}`]);
      await c.rolloutStatus("sample", "5m");
      const ips = await until(`endpoints of ${replicas} pods`, 180_000, async () => {
        const pods = await c.samplePods();
        const ready = running(pods);
        const ips = await c.endpointIPs("sample");
        return pods.length === replicas &&
          ready.length === replicas &&
          JSON.stringify(ips) === JSON.stringify(ready.map((p) => p.status!.podIP).sort())
          ? ips
          : undefined;
      });
      timings.add(`3. scale to ${replicas}: endpoints follow`, Date.now() - t0);
      expect(ips).toHaveLength(replicas);
    }
    const r = await c.requests(`http://${clusterIP}/`, 30);
    expect(r.failed).toBe(0);
    expect(r.by.size).toBe(2);
    await l.kubectl(["scale", "deployment/sample", "--replicas=3"]);
    await c.rolloutStatus("sample", "5m");
    const victim = running(await c.samplePods())[0]!.metadata!.name!;
    await timings.time("3. a deleted pod replaced", async () => {
      await l.kubectl(["delete", "pod", victim, "--wait=false"]);
      await until(
        "the deleted pod replaced, 3 Ready again",
        180_000,
        async () => {
          const pods = running(await c.samplePods());
          return pods.length === 3 && !pods.some((p) => p.metadata!.name === victim) ? true : undefined;
        },
        1000,
      );
    });
  });

  it("4. self-healing, container: its process killed on the node, it restarts; the Service keeps answering", async () => {
    const victim = running(await c.samplePods())[0]!;
    const before = victim.status!.containerStatuses![0]!.restartCount;
    const { node, pid } = await c.containerPid(victim);
    const t0 = Date.now();
    await c.onNode(node, `kill -9 ${pid}`);
    const during = await c.requests(`http://${clusterIP}/`, 20);
    const after = await until("restartCount grows and the pod is Ready again", 180_000, async () => {
      const p = await l.kubectlJson<V1Pod>(["get", "pod", victim.metadata!.name!]);
      return p.status!.containerStatuses![0]!.restartCount > before && running([p]).length ? p : undefined;
    });
    timings.add("4. killed container restarted and Ready", Date.now() - t0);
    expect(after.status!.containerStatuses![0]!.restartCount).toBeGreaterThan(before);
    expect(during.by.size).toBeGreaterThan(0);
    const r = await c.requests(`http://${clusterIP}/`, 30);
    expect(r.failed).toBe(0);
    expect(r.by.size).toBe(3);
  });

  it("7. rolling update and rollback with no failed request to the Service", async () => {
    const loop = c.inPod(
      "client",
      `rm -f /tmp/stop; ok=0; failed=0
       while [ ! -f /tmp/stop ]; do
         if timeout 3 wget -q -O /dev/null http://${clusterIP}/; then ok=$((ok+1)); else failed=$((failed+1)); fi
         sleep 0.2
       done
       echo "ok=$ok failed=$failed"`,
      { timeoutMs: 15 * 60_000, reject: false },
    );
    try {
      await timings.time("7. rolling update (env change)", async () => {
        await l.kubectl(["set", "env", "deployment/sample", "RELEASE=2"]);
        await c.rolloutStatus("sample", "5m");
      });
      const updated = running(await c.samplePods());
      expect(updated).toHaveLength(3);
      for (const p of updated)
        expect(p.spec!.containers[0]!.env).toContainEqual({ name: "RELEASE", value: "2" });
      await timings.time("7. rollout undo", async () => {
        await l.kubectl(["rollout", "undo", "deployment/sample"]);
        await c.rolloutStatus("sample", "5m");
      });
      const back = await until("3 replicas of the first revision", 120_000, async () => {
        const pods = running(await c.samplePods());
        return pods.length === 3 && pods.every((p) => !p.spec!.containers[0]!.env?.length) ? pods : undefined;
      });
      expect(back).toHaveLength(3);
    } finally {
      await c.inPod("client", "touch /tmp/stop", { reject: false });
    }
    const out = (await loop).stdout;
    const m = /ok=(\d+) failed=(\d+)/.exec(out);
    expect(m, out).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(20);
    expect(Number(m![2]), `requests during the update: ${out.trim()}`).toBe(0);
  });

  it("8. resource limits: a pod over its memory limit is OOMKilled and kubectl says so", async () => {
    const t0 = Date.now();
    await l.kubectl(["apply", "-f", app("memory-hog.yaml")]);
    const pod = await until("memory-hog terminated", 180_000, async () => {
      const p = await l.kubectlJson<V1Pod>(["get", "pod", "memory-hog"]);
      return p.status?.containerStatuses?.[0]?.state?.terminated ? p : undefined;
    });
    timings.add("8. memory hog OOMKilled", Date.now() - t0);
    const terminated = pod.status!.containerStatuses![0]!.state!.terminated!;
    expect(terminated.reason).toBe("OOMKilled");
    expect(terminated.exitCode).toBe(137);
    expect((await l.kubectl(["get", "pod", "memory-hog"])).stdout).toMatch(/memory-hog\s+0\/1\s+OOMKilled/);
    await l.kubectl(["delete", "pod", "memory-hog", "--wait=false"]);
  });

  it("5. self-healing, node: a worker powered off goes NotReady; its pods run on the other worker", async () => {
    const pods = running(await c.samplePods());
    const client = await l.kubectlJson<V1Pod>(["get", "pod", "client"]);
    const counts = new Map<string, number>();
    for (const p of pods) counts.set(p.spec!.nodeName!, (counts.get(p.spec!.nodeName!) ?? 0) + 1);
    const victim = [...counts.keys()].find((n) => n !== client.spec!.nodeName) ?? [...counts.keys()][0]!;
    const survivor = `worker-${victim === "worker-1" ? 2 : 1}`;
    const t0 = Date.now();
    // The provider's hard power-off: every process of the machine SIGKILLed at once.
    const killed = await powerOffMachine(l.name, victim);
    expect(killed).toBeGreaterThan(5);
    expect(await labCgroupPids(l.name, victim)).toEqual([]);
    expect((await findNspawnProcesses(l.name)).map((p) => p.node)).not.toContain(victim);
    await until(`${victim} NotReady`, 180_000, async () =>
      nodeReady(await l.kubectlJson<V1Node>(["get", "node", victim])) !== "True" ? true : undefined,
    );
    timings.add(`5. ${victim} powered off → NotReady`, Date.now() - t0);
    const moved = await until("3 sample pods Ready on the surviving worker", 300_000, async () => {
      const ready = running(await c.samplePods());
      return ready.length === 3 && ready.every((p) => p.spec!.nodeName === survivor) ? ready : undefined;
    });
    timings.add(`5. ${victim} powered off → pods Ready on ${survivor}`, Date.now() - t0);
    expect(moved).toHaveLength(3);
    // Grace (40 s) + toleration (10 s) + scheduling and start at native speed.
    expect(Date.now() - t0).toBeLessThan(180_000);
    if (client.spec!.nodeName === survivor) {
      const r = await c.requests(`http://${clusterIP}/`, 30);
      expect(r.failed).toBe(0);
    }
  });

  it("10. simulated host restart: every machine's processes killed and the lab's network namespaces gone; lab up returns inside its deadline, every node Ready, the Deployment serves again, no acked create lost", async () => {
    // A background kubectl workload (creates, lists, a watch) across the restart (chaos.ts).
    const w = new KubectlWorkload({ kubeconfig: l.kubeconfig });
    w.start();
    try {
      await until("the workload's first acked creates", 120_000, async () =>
        w.acked.length >= 3 ? true : undefined,
      );
      const nodes = ["master-1", "master-2", "master-3", "worker-1", "worker-2"];
      const t0 = Date.now();
      // What a host restart leaves: no machine process (every one SIGKILLed) and, /run being a
      // tmpfs, none of the lab's network namespaces.
      for (const n of nodes) await powerOffMachine(l.name, n);
      expect(await findNspawnProcesses(l.name)).toEqual([]);
      for (const ns of (await execa("ip", ["netns", "list"])).stdout.split("\n")) {
        const name = ns.split(" ")[0] ?? "";
        if (name === `lab-${l.name}` || name.startsWith(`lab-${l.name}.`))
          await execa("ip", ["netns", "del", name], { reject: false });
      }
      const up = await l.lab(["--json", "up", "--wait", "5m"], { reject: false, timeoutMs: 10 * 60_000 });
      timings.add("10. host restart: lab up again", Date.now() - t0);
      expect(up.exitCode, `lab up after the restart: ${up.stderr.slice(-2000)}`).toBe(0);
      await until("every node Ready", 300_000, async () => {
        const ns = await c.items<V1Node>(["get", "nodes"]);
        return ns.length === nodes.length && ns.every((n) => nodeReady(n) === "True") ? true : undefined;
      });
      timings.add("10. host restart: every node Ready", Date.now() - t0);
      const ready = await until("3 sample pods Ready and the Service answering", 300_000, async () => {
        const pods = running(await c.samplePods());
        if (pods.length !== 3) return undefined;
        const r = await c.requests(`http://${clusterIP}/`, 10);
        return r.failed === 0 ? pods : undefined;
      });
      timings.add("10. host restart: the Service answers from 3 pods", Date.now() - t0);
      expect(ready).toHaveLength(3);
      const lost = await until("a list of the workload", 120_000, () => w.lost());
      timings.count("10. host restart: acked creates lost", lost.length);
      expect(lost, `acknowledged creates missing after the restart (${w.summary()})`).toEqual([]);
    } finally {
      await w.stop();
    }
  });

  it("9. lab down leaves no process, namespace, link, cgroup, mount or state", async () => {
    await timings.time("9. lab down", () => l.lab(["down", l.name]));
    expect(await allLeftovers(l)).toEqual([]);
    const nspawns = await execa("pgrep", ["-af", "systemd-nspawn"], { reject: false });
    expect(nspawns.stdout.split("\n").filter((x) => x.includes(`lab:${l.name}/`))).toEqual([]);
  });
});

describe("two nspawn labs side by side", () => {
  let a: E2eLab;
  let b: E2eLab;
  beforeAll(async () => {
    a = await E2eLab.create("sa", nspawnTopology(1, 0));
    b = await E2eLab.create("sb", nspawnTopology(1, 0));
  });
  afterAll(async () => {
    await a?.remove();
    await b?.remove();
  });

  it("both come up at once on their own subnets; removing one leaves the other running", async () => {
    const [ua, ub] = await Promise.all([
      a.lab(["--json", "up", "--machines-only"]),
      b.lab(["--json", "up", "--machines-only"]),
    ]);
    expect(ua.exitCode).toBe(0);
    expect(ub.exitCode).toBe(0);
    const [ma] = await a.machines();
    const [mb] = await b.machines();
    expect(ma!.address).not.toBe(mb!.address);
    expect((await onNodeOf(a, "master-1", "hostname")).stdout.trim()).toBe("master-1");
    expect((await onNodeOf(b, "master-1", "ip -4 -o addr show dev eth0")).stdout).toContain(
      `${mb!.address}/`,
    );
    await a.lab(["down", a.name]);
    expect(await allLeftovers(a)).toEqual([]);
    expect((await b.ssh("master-1", "systemctl is-system-running || true")).stdout).toMatch(
      /running|degraded/,
    );
    await b.lab(["down", b.name]);
    expect(await allLeftovers(b)).toEqual([]);
  });
});

describe("lab down after kill -9", () => {
  let l: E2eLab;
  beforeAll(async () => {
    l = await E2eLab.create("nk", nspawnTopology(1, 1));
  });
  afterAll(async () => {
    await l?.remove();
  });

  it("of lab up (machines started) and of one machine's systemd-nspawn: nothing left", async () => {
    const up = l.spawnLab(["--json", "up"]);
    const started = new Set<string>();
    await new Promise<void>((resolve, reject) => {
      let buf = "";
      up.stdout!.on("data", (d: Buffer) => {
        buf += d.toString();
        for (const e of jsonLines(buf, true))
          if (e.step === "vm.ssh-ready" && e.state === "done") started.add(String(e.node));
        if (started.size === 2) resolve();
      });
      up.then((r) => reject(new Error(`lab up ended before the machines were up: ${r.stderr}`)), reject);
    });
    up.kill("SIGKILL");
    await up;
    // A machine whose nspawn dies keeps running under its own init: lab down must find it anyway.
    const pid = await nspawnPid(l.name, "worker-1");
    expect(pid).toBeDefined();
    process.kill(pid!, "SIGKILL");
    await until(
      "systemd-nspawn of worker-1 gone",
      10_000,
      async () => ((await nspawnPid(l.name, "worker-1")) === undefined ? true : undefined),
      500,
    );
    expect((await hostLeftovers(l.name)).some((x) => x.startsWith("cgroup "))).toBe(true);
    await l.lab(["down", l.name]);
    expect(await allLeftovers(l)).toEqual([]);
  });
});
