/**
 * The cluster's promises on a real lab, with stock kubectl: ONE lab (the default topology,
 * examples/default.yaml: 3 masters + 2 workers + VIP, unless LAB_E2E_TOPOLOGY names another, e.g.
 * examples/one-master-two-workers.yaml for a quicker run without the HA scenarios) comes
 * up in beforeAll under TCG; the scenarios run in order against it,
 * the destructive ones (worker power-off, master power-off) last; afterAll runs `lab down` even when
 * a scenario failed. Timings go to test-results/e2e-timings.{txt,json}.
 *
 * "From a pod" means: on the pod's node, enter the pod container's namespaces (`ctr task ls` gives
 * its pid, `nsenter` its mount/net/pid namespaces) and run the image's busybox, so the scenarios do
 * not depend on `kubectl exec` (scenario 2b tests that on its own).
 *
 * Development against a lab kept up by hand: LAB_E2E_ATTACH=DIR (a dir holding lab.yaml and the
 * lab's LAB_HOME in DIR/home) reuses that lab and leaves it up; LAB_E2E_TOPOLOGY=FILE picks another
 * topology. Scenarios that need more machines than the topology has (6 and 6a need 3 masters, 5 two
 * workers) are reported skipped.
 */
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { parse } from "yaml";
import type { V1Endpoints, V1Lease, V1Node, V1Pod, V1Service } from "@kubernetes/client-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { E2eLab, jsonLines, repo, Timings, until } from "./helpers.ts";

const attach = process.env.LAB_E2E_ATTACH;
// CI runs the default lab (issue 8): ~8 min to come up on a 2-core TCG runner, ~16 min for the suite.
const topologyFile = process.env.LAB_E2E_TOPOLOGY || join(repo, "examples/default.yaml");
const topologyText = attach
  ? readFileSync(join(attach, "lab.yaml"), "utf8")
  : readFileSync(topologyFile, "utf8");
const topology = parse(topologyText) as {
  spec: { masters: { count: number }; workers: { count: number } };
};
const masterCount = topology.spec.masters.count;
const workerCount = topology.spec.workers.count;
const app = (f: string) => join(repo, "examples/apps", f);

let l: E2eLab;
const timings = new Timings(
  "cluster",
  `e2e cluster (${masterCount} masters + ${workerCount} workers${masterCount > 1 ? " + VIP" : ""}, TCG)`,
);
/** The sample Service's ClusterIP and, once the dns branch's resolver answers, its DNS name. */
let clusterIP = "";
const serviceDns = "sample.default.svc.cluster.local";
/** Nodes powered off by a scenario: later scenarios must not use them. */
const poweredOff = new Set<string>();

beforeAll(async () => {
  if (attach) {
    l = E2eLab.attach(attach);
    await l.lab(["kubeconfig", l.name, "-o", l.kubeconfig]);
    return;
  }
  // The topology, under a lab name of this run.
  l = await E2eLab.create("ce", topologyText.replace(/^(\s*name:\s*)\S+\s*$/m, "$1NAME"));
  const t0 = Date.now();
  // TCG on 2 shared cores: give the nodes 15 min to turn Ready (lab up's default wait is 5 min).
  const up = await l.lab(["--json", "up", "--wait", "15m"], { reject: false });
  timings.add("lab up total", Date.now() - t0);
  const events = jsonLines(up.stdout);
  for (const e of events) {
    if (typeof e.elapsedMs !== "number" || (e.state !== "done" && e.state !== "failed")) continue;
    const step = String(e.step);
    const failed = e.state === "failed" ? " (failed)" : "";
    if (step.startsWith("bootstrap.") || step === "image") timings.add(`  ${step}${failed}`, e.elapsedMs);
    else if (step === "vm.ssh-ready") timings.add(`  ${step} ${String(e.node)}${failed}`, e.elapsedMs);
  }
  if (up.exitCode !== 0) {
    failed = true; // afterAll exports the lab's logs (consoles, journals) before lab down
    const failures = events.filter((e) => e.state === "failed" || e.type === "error");
    throw new Error(`lab up failed (exit ${up.exitCode}): ${JSON.stringify(failures)}\n${up.stderr}`);
  }
  await l.lab(["kubeconfig", l.name, "-o", l.kubeconfig]);
});

/** Set when a scenario failed: afterAll then exports the lab's logs before `lab down`. */
let failed = false;
afterEach((ctx) => {
  if (ctx.task.result?.state === "fail") failed = true;
});

afterAll(async () => {
  await timings.write().catch(() => undefined);
  if (l && failed && !poweredOffAll())
    await l.lab(["export", "logs", "--lab", l.name, join(repo, "test-results", "e2e-cluster-logs")], {
      reject: false,
      timeoutMs: 600_000,
    });
  if (l && !attach) await l.remove();
});
/** lab export logs is best effort per node; skip it only when there is nothing left to ask. */
const poweredOffAll = () => poweredOff.size >= masterCount + workerCount;

// ---- reading the cluster -------------------------------------------------------------------------

const items = async <T>(args: string[]) => (await l.kubectlJson<{ items: T[] }>(args)).items;
const samplePods = () => items<V1Pod>(["get", "pods", "-l", "app=sample"]);
const running = (pods: V1Pod[]) =>
  pods.filter(
    (p) =>
      p.status?.phase === "Running" &&
      !p.metadata?.deletionTimestamp &&
      p.status.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
  );
async function endpointIPs(service: string): Promise<string[]> {
  const ep = await l.kubectlJson<V1Endpoints>(["get", "endpoints", service]);
  return (ep.subsets ?? []).flatMap((s) => (s.addresses ?? []).map((a) => a.ip)).sort();
}
const nodeReady = (n: V1Node) => n.status?.conditions?.find((c) => c.type === "Ready")?.status;

/** `sh` on a node as root; the script travels base64-encoded so no shell layer re-quotes it. */
function onNode(node: string, script: string, opts: { reject?: boolean; timeoutMs?: number } = {}) {
  const b64 = Buffer.from(script).toString("base64");
  return l.lab(["ssh", "--lab", l.name, node, "--", `echo ${b64} | base64 -d | sudo sh`], opts);
}

/** The host pid of a pod's (first) container, from containerd on its node. */
async function containerPid(pod: V1Pod): Promise<{ node: string; pid: number; id: string }> {
  const node = pod.spec!.nodeName!;
  const id = pod.status!.containerStatuses![0]!.containerID!.replace(/^containerd:\/\//, "");
  const r = await onNode(node, `ctr -n k8s.io task ls | awk '$1=="${id}"{print $2}'`);
  const pid = Number(r.stdout.trim());
  if (!pid) throw new Error(`no task for container ${id} of ${pod.metadata!.name} on ${node}`);
  return { node, pid, id };
}

/** A busybox sh script inside pod `name` (its mount, UTS, IPC, network and pid namespaces). */
async function inPod(name: string, script: string, opts: { reject?: boolean; timeoutMs?: number } = {}) {
  const pod = await l.kubectlJson<V1Pod>(["get", "pod", name]);
  const { node, pid } = await containerPid(pod);
  const b64 = Buffer.from(script).toString("base64");
  return onNode(node, `nsenter -t ${pid} -m -u -i -n -p sh -c "$(echo ${b64} | base64 -d)"`, opts);
}

/** `count` GETs of `url` from the client pod: how many answers came from each pod name, and failures. */
async function requests(url: string, count: number): Promise<{ by: Map<string, number>; failed: number }> {
  const r = await inPod(
    "client",
    `i=0; while [ $i -lt ${count} ]; do timeout 3 wget -q -O - ${url} || echo FAILED; i=$((i+1)); done`,
    { timeoutMs: 600_000 },
  );
  const by = new Map<string, number>();
  let failed = 0;
  for (const line of r.stdout.split("\n").map((s) => s.trim())) {
    if (!line) continue;
    if (line === "FAILED") failed++;
    else by.set(line, (by.get(line) ?? 0) + 1);
  }
  return { by, failed };
}

async function rolloutStatus(deployment: string, timeout = "10m"): Promise<void> {
  await l.kubectl(["rollout", "status", `deployment/${deployment}`, `--timeout=${timeout}`], {
    timeoutMs: 15 * 60_000,
  });
}

/** The pid of a node's QEMU process (its cmdline names `lab:LAB/NODE`). */
async function qemuPid(node: string): Promise<number> {
  const r = await execa("pgrep", ["-f", "--", `-name lab:${l.name}/${node} `], { reject: false });
  const pids = r.stdout.split("\n").filter(Boolean).map(Number);
  if (pids.length !== 1) throw new Error(`expected one QEMU process for ${node}, found ${pids.join(",")}`);
  return pids[0]!;
}

/** Power a VM off the hard way: SIGKILL its QEMU process, as if its host lost power. */
async function powerOff(node: string): Promise<void> {
  process.kill(await qemuPid(node), "SIGKILL");
  poweredOff.add(node);
}

// ---- the scenarios, in order ---------------------------------------------------------------------

describe(`the cluster's promises (${masterCount} masters + ${workerCount} workers, TCG)`, () => {
  it("0. every node is Ready and stock kubectl reaches the API; no certificate → 401", async () => {
    const nodes = await timings.time("nodes Ready", () =>
      until("every node Ready", 600_000, async () => {
        const ns = await items<V1Node>(["get", "nodes"]);
        return ns.length === masterCount + workerCount && ns.every((n) => nodeReady(n) === "True")
          ? ns
          : undefined;
      }),
    );
    expect(nodes.map((n) => n.metadata!.name).sort()).toEqual(
      [
        ...Array.from({ length: masterCount }, (_, i) => `master-${i + 1}`),
        ...Array.from({ length: workerCount }, (_, i) => `worker-${i + 1}`),
      ].sort(),
    );
    expect((await l.kubectl(["get", "--raw", "/readyz"])).stdout.trim()).toBe("ok");
    const server = /server: (\S+)/.exec(await readFile(l.kubeconfig, "utf8"))![1]!;
    const anon = await execa("curl", [
      "-sk",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      `${server}/api/v1/namespaces`,
    ]);
    expect(anon.stdout).toBe("401");
  });

  it("1. declarative deployment: apply, rollout status completes, pods spread over both workers", async () => {
    await timings.time("1. apply + rollout status (3 replicas)", async () => {
      await l.kubectl(["apply", "-f", app("sample.yaml"), "-f", app("client.yaml")]);
      await rolloutStatus("sample");
    });
    const pods = running(await samplePods());
    expect(pods).toHaveLength(3);
    const nodes = new Set(pods.map((p) => p.spec!.nodeName));
    // Masters are tainted NoSchedule; the scheduler spreads replicas over the workers.
    expect([...nodes].sort()).toEqual(
      Array.from({ length: Math.min(workerCount, 3) }, (_, i) => `worker-${i + 1}`),
    );
    const svc = await l.kubectlJson<V1Service>(["get", "service", "sample"]);
    clusterIP = svc.spec!.clusterIP!;
    expect(clusterIP).toMatch(/^10\.96\./);
    expect(await endpointIPs("sample")).toEqual(pods.map((p) => p.status!.podIP).sort());
    await until("client pod Running", 300_000, async () =>
      (await l.kubectlJson<V1Pod>(["get", "pod", "client"])).status?.phase === "Running" ? true : undefined,
    );
  });

  it("2. service discovery and load balancing: the DNS name answers; 300 requests reach all 3 replicas", async () => {
    const names = running(await samplePods())
      .map((p) => p.metadata!.name!)
      .sort();
    const viaIP = await timings.time("2. 300 requests to the ClusterIP", () =>
      requests(`http://${clusterIP}/`, 300),
    );
    expect(viaIP.failed).toBe(0);
    expect([...viaIP.by.keys()].sort()).toEqual(names);
    for (const n of names) expect(viaIP.by.get(n)).toBeGreaterThan(30);

    const lookup = await inPod(
      "client",
      `nslookup ${serviceDns} 2>&1; echo; timeout 3 wget -q -O - http://sample/`,
      {
        reject: false,
      },
    );
    expect(lookup.stdout, "the Service's DNS name resolves to its ClusterIP from a pod").toContain(clusterIP);
    expect(names, "the short name answers with a replica's pod name").toContain(
      lookup.stdout.trim().split("\n").at(-1),
    );
  });

  it("2b. kubectl logs and exec reach a pod on a worker through lab-server and lab-agent", async () => {
    const pod = running(await samplePods())[0]!.metadata!.name!;
    await timings.time("2b. kubectl logs + 2 exec", async () => {
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
  });

  it("3. horizontal scaling: 6 replicas, then 2; the Service's endpoints follow", async () => {
    for (const replicas of [6, 2]) {
      const t0 = Date.now();
      await l.kubectl(["scale", "deployment/sample", `--replicas=${replicas}`]);
      await rolloutStatus("sample");
      const ips = await until(`endpoints of ${replicas} pods`, 300_000, async () => {
        const pods = await samplePods();
        const ready = running(pods);
        const ips = await endpointIPs("sample");
        return pods.length === replicas &&
          ready.length === replicas &&
          JSON.stringify(ips) === JSON.stringify(ready.map((p) => p.status!.podIP).sort())
          ? ips
          : undefined;
      });
      timings.add(`3. scale to ${replicas}: endpoints follow`, Date.now() - t0);
      expect(ips).toHaveLength(replicas);
    }
    const r = await requests(`http://${clusterIP}/`, 40);
    expect(r.failed).toBe(0);
    expect(r.by.size).toBe(2);
    // Back to 3 for the scenarios after this one.
    await l.kubectl(["scale", "deployment/sample", "--replicas=3"]);
    await rolloutStatus("sample");
  });

  it("4. self-healing, container: its process killed on the node, it restarts; the Service keeps answering", async () => {
    const victim = running(await samplePods())[0]!;
    const before = victim.status!.containerStatuses![0]!.restartCount;
    const { node, pid } = await containerPid(victim);
    const t0 = Date.now();
    await onNode(node, `kill -9 ${pid}`);
    const during = await requests(`http://${clusterIP}/`, 20);
    const after = await until("restartCount grows and the pod is Ready again", 300_000, async () => {
      const p = await l.kubectlJson<V1Pod>(["get", "pod", victim.metadata!.name!]);
      return p.status!.containerStatuses![0]!.restartCount > before && running([p]).length ? p : undefined;
    });
    timings.add("4. killed container restarted and Ready", Date.now() - t0);
    expect(after.status!.containerStatuses![0]!.restartCount).toBeGreaterThan(before);
    // Other replicas answered while it was down (a request may hit it before its endpoint is gone).
    expect(during.by.size).toBeGreaterThan(0);
    const r = await requests(`http://${clusterIP}/`, 30);
    expect(r.failed).toBe(0);
    expect(r.by.size).toBe(3);
  });

  it("7. rolling update and rollback with no failed request to the Service", async () => {
    // A client loop in the client pod for the whole update and undo; it stops when /tmp/stop exists.
    const loop = inPod(
      "client",
      `rm -f /tmp/stop; ok=0; failed=0
       while [ ! -f /tmp/stop ]; do
         if timeout 3 wget -q -O /dev/null http://${clusterIP}/; then ok=$((ok+1)); else failed=$((failed+1)); fi
         sleep 0.2 # a steady trickle, not a busy loop that starves a 1-vCPU worker
       done
       echo "ok=$ok failed=$failed"`,
      { timeoutMs: 20 * 60_000, reject: false },
    );
    try {
      await timings.time("7. rolling update (env change)", async () => {
        await l.kubectl(["set", "env", "deployment/sample", "RELEASE=2"]);
        await rolloutStatus("sample");
      });
      const updated = running(await samplePods());
      expect(updated).toHaveLength(3);
      for (const p of updated)
        expect(p.spec!.containers[0]!.env).toContainEqual({ name: "RELEASE", value: "2" });
      await timings.time("7. rollout undo", async () => {
        await l.kubectl(["rollout", "undo", "deployment/sample"]);
        await rolloutStatus("sample");
      });
      const back = await until("3 replicas of the first revision", 120_000, async () => {
        const pods = running(await samplePods());
        return pods.length === 3 && pods.every((p) => !p.spec!.containers[0]!.env?.length) ? pods : undefined;
      });
      expect(back).toHaveLength(3);
    } finally {
      await inPod("client", "touch /tmp/stop", { reject: false });
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
    const pod = await until("memory-hog terminated", 300_000, async () => {
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

  it.skipIf(workerCount < 2)(
    "5. self-healing, node: a worker powered off goes NotReady; its pods run on the other worker",
    async () => {
      const pods = running(await samplePods());
      // The worker with the most replicas; the client pod should stay reachable, so prefer the other.
      const client = await l.kubectlJson<V1Pod>(["get", "pod", "client"]);
      const counts = new Map<string, number>();
      for (const p of pods) counts.set(p.spec!.nodeName!, (counts.get(p.spec!.nodeName!) ?? 0) + 1);
      const victim = [...counts.keys()].find((n) => n !== client.spec!.nodeName) ?? [...counts.keys()][0]!;
      const survivor = `worker-${victim === "worker-1" ? 2 : 1}`;
      const t0 = Date.now();
      await powerOff(victim);
      await until(`${victim} NotReady`, 300_000, async () =>
        nodeReady(await l.kubectlJson<V1Node>(["get", "node", victim])) !== "True" ? true : undefined,
      );
      timings.add(`5. ${victim} powered off → NotReady`, Date.now() - t0);
      const moved = await until("3 sample pods Ready on the surviving worker", 600_000, async () => {
        const ready = running(await samplePods());
        return ready.length === 3 && ready.every((p) => p.spec!.nodeName === survivor) ? ready : undefined;
      });
      timings.add(`5. ${victim} powered off → pods Ready on ${survivor}`, Date.now() - t0);
      expect(moved).toHaveLength(3);
      // Grace (40 s) + toleration (10 s) + scheduling and start under TCG.
      expect(Date.now() - t0).toBeLessThan(300_000);
      if (client.spec!.nodeName === survivor) {
        const r = await requests(`http://${clusterIP}/`, 30);
        expect(r.failed).toBe(0);
      }
    },
  );

  it.skipIf(masterCount < 3)(
    "6a. the VIP follows lab-server: stopped on the VIP holder, the API answers through the VIP again within 10 s",
    async () => {
      const vip = await labVip();
      const holder = await vipNode(vip);
      await onNode(holder, "systemctl stop lab-server.service");
      let took = 0;
      let next = "";
      try {
        const t0 = Date.now();
        await apiAnswersThroughVip(120_000, 5_000, 500);
        took = Date.now() - t0;
        timings.add(`6a. lab-server stopped on ${holder} → API answers through the VIP`, took);
        next = await vipNode(vip);
      } finally {
        await onNode(holder, "systemctl start lab-server.service");
      }
      expect(next, "another master took the VIP").not.toBe(holder);
      expect(took).toBeLessThan(10_000);
    },
  );

  it.skipIf(masterCount < 3)(
    "6. leader election and HA: the master with the VIP and the controller lease powered off; the API answers through the VIP, a new leader, a scale-up completes",
    async () => {
      const leaseArgs = ["get", "lease", "-n", "kube-system", "kube-controller-manager"];
      const lease = await l.kubectlJson<V1Lease>(leaseArgs);
      const vip = await labVip();
      // Put the lease on the master holding the VIP, so one power-off takes both away: restarting
      // lab-server on the lease holder hands the lease to another master (a few tries at most).
      const vipHolder = await vipNode(vip);
      let holder = lease.spec!.holderIdentity!;
      for (let tries = 0; !holder.startsWith(`${vipHolder}_`) && tries < 6; tries++) {
        const previous = holder;
        await onNode(previous.split("_")[0]!, "systemctl restart lab-server.service");
        holder = await until("the lease changes hands", 180_000, async () => {
          const h = (await l.kubectlJson<V1Lease>(leaseArgs)).spec?.holderIdentity;
          return h && h !== previous ? h : undefined;
        });
      }
      const leaderNode = holder.split("_")[0]!;
      expect(leaderNode, "the VIP holder also holds the controller lease").toBe(vipHolder);
      const t0 = Date.now();
      await powerOff(leaderNode);
      await apiAnswersThroughVip(300_000, 15_000, 1_000);
      timings.add(`6. ${leaderNode} powered off → API answers through the VIP`, Date.now() - t0);
      const newHolder = await until(
        "a new controller-manager leader",
        300_000,
        async () => {
          const ls = await l.kubectlJson<V1Lease>([
            "get",
            "lease",
            "-n",
            "kube-system",
            "kube-controller-manager",
          ]);
          const h = ls.spec?.holderIdentity;
          return h && h !== holder && !h.startsWith(`${leaderNode}_`) ? h : undefined;
        },
        1_000,
      );
      timings.add(`6. ${leaderNode} powered off → new lease holder`, Date.now() - t0);
      expect(newHolder.split("_")[0]).not.toBe(leaderNode);
      const t1 = Date.now();
      const have = running(await samplePods()).length;
      await l.kubectl(["scale", "deployment/sample", `--replicas=${have + 2}`]);
      await rolloutStatus("sample");
      timings.add(`6. scale-up after the failure completes`, Date.now() - t1);
      expect(running(await samplePods())).toHaveLength(have + 2);
    },
  );

  it.skipIf(!!attach)("9. lab down leaves no process, namespace, link or file", async () => {
    await timings.time("9. lab down", () => l.lab(["down", l.name]));
    expect(await l.leftovers()).toEqual([]);
  });
});

/** The API endpoint's address (the VIP) from the lab's kubeconfig. */
async function labVip(): Promise<string> {
  return /server: https:\/\/([\d.]+)/.exec(await readFile(l.kubeconfig, "utf8"))![1]!;
}

/** Waits until stock kubectl gets /readyz through the kubeconfig's endpoint (the VIP). */
async function apiAnswersThroughVip(limitMs: number, requestMs: number, intervalMs: number): Promise<void> {
  await until(
    "the API answers through the VIP",
    limitMs,
    async () => {
      const r = await l.kubectl(["get", "--raw", "/readyz"], { reject: false, timeoutMs: requestMs });
      return r.exitCode === 0 ? true : undefined;
    },
    intervalMs,
  );
}

/** Which live master holds the VIP on its interface. */
async function vipNode(vip: string): Promise<string> {
  for (let i = 1; i <= masterCount; i++) {
    const node = `master-${i}`;
    if (poweredOff.has(node)) continue;
    const r = await onNode(node, "ip -o -4 addr show", { reject: false, timeoutMs: 30_000 });
    if (r.stdout.includes(` ${vip}/`)) return node;
  }
  throw new Error(`no master holds the VIP ${vip}`);
}
