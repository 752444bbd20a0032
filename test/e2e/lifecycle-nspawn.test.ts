/**
 * `lab stop` and `lab start` (issue 22) on an HA lab of nspawn machines (3 masters + 1 worker): a
 * Deployment and a ConfigMap made before the stop; `lab stop` walks workers, then masters, etcd last, and
 * powers every machine off cleanly; `lab status` says stopped and no machine process is left;
 * `lab start` brings every node back Ready, with the ConfigMap as it was and the Deployment's pods
 * Running again. Prints (and records) stop time and start → Ready time.
 * Run: npx vitest run --project e2e test/e2e/lifecycle-nspawn.test.ts
 */
import type { V1ConfigMap, V1Node, V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labCgroupPids } from "../../provisioners/nspawn/cgroups.ts";
import { findNspawnProcesses } from "../../provisioners/nspawn/index.ts";
import { isZombie } from "../../provisioners/nspawn/processes.ts";
import { nodeReady, running } from "./cluster-helpers.ts";
import { E2eLab, jsonLines, Timings, until } from "./helpers.ts";

const TOPOLOGY = `apiVersion: lab/v1alpha1
kind: Lab
metadata:
  name: NAME
spec:
  provider:
    type: nspawn
  resources:
    cpus: 1
    memory: 1536Mi
  masters:
    count: 3
  workers:
    count: 1
`;

const WORKLOAD = `apiVersion: v1
kind: ConfigMap
metadata:
  name: kept
data:
  greeting: made before the stop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: kept
spec:
  replicas: 2
  selector:
    matchLabels:
      app: kept
  template:
    metadata:
      labels:
        app: kept
    spec:
      containers:
      - name: main
        image: lab/sample:latest
        imagePullPolicy: IfNotPresent
        ports:
        - name: http
          containerPort: 8080
        readinessProbe:
          httpGet:
            path: /
            port: http
          periodSeconds: 2
`;

const MASTERS = ["master-1", "master-2", "master-3"];
const NODES = [...MASTERS, "worker-1"];
/** `lab stop`'s phases in order; a (step, node) pair belongs to one. */
const phase = (step: string, node: string): number =>
  ({ "stop.workers": 0, "stop.masters": 2, "stop.etcd": 3 })[step] ??
  (step === "stop.power-off" ? (node.startsWith("worker") ? 1 : 4) : -1);

const timings = new Timings("lifecycle-nspawn", "e2e lab stop / lab start on nspawn (3 masters + 1 worker)");
afterAll(async () => {
  await timings.write().catch(() => undefined);
  for (const [what, s] of timings.rows) console.log(`lifecycle timing: ${what}: ${s.toFixed(1)} s`);
});

describe("lab stop and lab start on nspawn machines", () => {
  let l: E2eLab;
  const items = async <T>(args: string[]) => (await l.kubectlJson<{ items: T[] }>(args)).items;
  const status = async () =>
    JSON.parse((await l.lab(["--json", "status", l.name])).stdout) as {
      state: string;
      machines: { name: string; state: string }[];
      etcd?: { name: string; healthy: boolean; leader: boolean }[];
    };
  let podsBefore: string[] = [];

  beforeAll(async () => {
    l = await E2eLab.create("lc", TOPOLOGY);
    const t0 = Date.now();
    const up = await l.lab(["--json", "up", "--wait", "15m"], { reject: false, timeoutMs: 20 * 60_000 });
    timings.add("lab up to 4 nodes Ready", Date.now() - t0);
    if (up.exitCode !== 0)
      throw new Error(
        `lab up failed (exit ${up.exitCode}): ${up.stderr}\n${up.stdout.split("\n").slice(-40).join("\n")}`,
      );
    await l.lab(["kubeconfig", l.name, "-o", l.kubeconfig]);
    await l.kubectl(["apply", "-f", "-"], { input: WORKLOAD });
    await l.kubectl(["rollout", "status", "deployment/kept", "--timeout=300s"], { timeoutMs: 310_000 });
    podsBefore = running(await items<V1Pod>(["get", "pods", "-l", "app=kept"])).map((p) => p.metadata!.name!);
    expect(podsBefore).toHaveLength(2);
  }, 1_500_000);

  afterAll(async () => {
    await l?.remove();
  });

  it("lab start of a lab that was never created names `lab up`", async () => {
    const r = await l.lab(["start", `${l.name}x`], { reject: false });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`lab ${l.name}x was never created`);
    expect(r.stderr).toContain("lab up");
  });

  it("lab stop: workers, then the masters with etcd last, every machine powered off cleanly; status says stopped", async () => {
    const t0 = Date.now();
    const r = await l.lab(["--json", "stop", l.name, "--timeout", "90s"], {
      reject: false,
      timeoutMs: 8 * 60_000,
    });
    timings.add("lab stop", Date.now() - t0);
    expect(
      r.exitCode,
      `lab stop: ${r.stderr.slice(-2000)}\n${r.stdout.split("\n").slice(-12).join("\n")}`,
    ).toBe(0);
    const lines = jsonLines(r.stdout);
    const steps = lines.filter((e) => e.type === "step" && e.state !== "progress");
    // Every node did its part of each phase, cleanly...
    const done = steps.filter((e) => e.state === "done").map((e) => `${String(e.step)} ${String(e.node)}`);
    expect(done.sort()).toEqual(
      [
        "stop.workers worker-1",
        "stop.power-off worker-1",
        ...MASTERS.flatMap((m) => [`stop.masters ${m}`, `stop.etcd ${m}`, `stop.power-off ${m}`]),
      ].sort(),
    );
    // ...and no phase started before the one before it had ended on every node.
    const phases = steps.map((e) => phase(String(e.step), String(e.node)));
    expect(
      phases.every((p, i) => p >= 0 && (i === 0 || p >= phases[i - 1]!)),
      phases.join(","),
    ).toBe(true);
    expect(lines.filter((e) => e.type === "notice")).toEqual([]);
    expect(lines.at(-1)).toMatchObject({
      type: "result",
      lab: l.name,
      state: "stopped",
      servicesOnly: false,
    });

    // No machine process left: no systemd-nspawn, nothing alive in the lab's cgroups.
    expect(await findNspawnProcesses(l.name)).toEqual([]);
    expect((await labCgroupPids(l.name)).filter((p) => !isZombie(p))).toEqual([]);
    const s = await status();
    expect(s.state).toBe("stopped");
    expect(s.machines.map((m) => `${m.name} ${m.state}`)).toEqual(NODES.map((n) => `${n} stopped`));
    const text = (await l.lab(["status", l.name])).stdout;
    expect(text).toMatch(new RegExp(`^lab ${l.name} \\(nspawn, [^)]+\\): stopped since `));
    // A second stop has nothing left to do and says so per node.
    const again = await l.lab(["--json", "stop", l.name], { timeoutMs: 120_000 });
    expect(jsonLines(again.stdout).filter((e) => e.type === "step" && e.state !== "skipped")).toEqual([]);
  }, 600_000);

  it("lab start: every node Ready, the ConfigMap as it was, the Deployment's pods Running again", async () => {
    const t0 = Date.now();
    const r = await l.lab(["--json", "start", l.name, "--wait", "10m"], {
      reject: false,
      timeoutMs: 15 * 60_000,
    });
    timings.add("lab start (returns)", Date.now() - t0);
    expect(r.exitCode, `lab start: ${r.stderr.slice(-2000)}`).toBe(0);
    expect(jsonLines(r.stdout).at(-1)).toMatchObject({ type: "result", lab: l.name, state: "running" });
    await until(
      "every node Ready",
      300_000,
      async () => {
        const ns = await items<V1Node>(["get", "nodes"]);
        return ns.length === NODES.length && ns.every((n) => nodeReady(n) === "True") ? true : undefined;
      },
      2000,
    );
    timings.add("lab start to every node Ready", Date.now() - t0);
    const cm = await l.kubectlJson<V1ConfigMap>(["get", "configmap", "kept"]);
    expect(cm.data).toEqual({ greeting: "made before the stop" });
    const pods = await until(
      "2 pods of deployment kept Running and Ready",
      300_000,
      async () => {
        const ps = running(await items<V1Pod>(["get", "pods", "-l", "app=kept"]));
        return ps.length === 2 ? ps : undefined;
      },
      2000,
    );
    timings.add("lab start to the Deployment's pods Running", Date.now() - t0);
    expect(pods.map((p) => p.status?.phase)).toEqual(["Running", "Running"]);
    const dep = await l.kubectlJson<{ status?: { readyReplicas?: number } }>(["get", "deployment", "kept"]);
    expect(dep.status?.readyReplicas).toBe(2);
    const s = await status();
    expect(s.state).toBe("running");
    expect(s.machines.map((m) => `${m.name} ${m.state}`)).toEqual(NODES.map((n) => `${n} running`));
    // The three etcd members are back, healthy, with a leader.
    expect(s.etcd?.map((e) => `${e.name} ${e.healthy}`)).toEqual(MASTERS.map((m) => `${m} true`));
    expect(s.etcd?.filter((e) => e.leader)).toHaveLength(1);
  }, 1_200_000);
});
