/**
 * A real cluster on real VMs under TCG, through the real `lab` CLI and stock kubectl: `lab up` of a
 * 1-master + 1-worker lab (pki → etcd → control-plane → vip → join-nodes → wait-ready), then the
 * API through `lab kubeconfig` (readyz, namespaces, a ConfigMap round trip, 401 without a
 * certificate), `lab status` with the etcd member, the nodes Ready and the sample Deployment's pods
 * Running, and a `lab down` that leaves nothing behind. Timings go to test-results/e2e-timings.txt.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const repo = resolve(import.meta.dirname, "../..");
const labBin = join(repo, "bin/lab.js");
const name = `ce${process.pid % 100000}`;
const imageCache = process.env.LAB_IMAGE_CACHE || "/var/tmp/lab-image-cache";
let home = "";
let dir = "";
let kubeconfig = "";

const env = () => ({ ...process.env, LAB_HOME: home, LAB_IMAGE_CACHE: imageCache, LAB_SSH_TIMEOUT: "420" });
const lab = (args: string[], opts: { reject?: boolean } = {}) =>
  execa(process.execPath, [labBin, ...args], { cwd: dir, env: env(), reject: opts.reject ?? true });
const kubectl = (args: string[], opts: { reject?: boolean; input?: string } = {}) =>
  execa("kubectl", ["--kubeconfig", kubeconfig, "--request-timeout=20s", ...args], {
    reject: opts.reject ?? true,
    ...(opts.input !== undefined ? { input: opts.input } : {}),
  });
const jsonLines = (out: string) =>
  out
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

/** Rows of the timing table: what, seconds. */
const timings: [string, number][] = [];
const seconds = (ms: number) => Math.round(ms / 100) / 10;

async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const started = Date.now();
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() - started > timeoutMs)
      throw new Error(`${what}: not within ${timeoutMs / 1000} s${last ? ` (${String(last)})` : ""}`);
    await new Promise((r) => setTimeout(r, 2_000));
  }
}

async function leftovers(): Promise<string[]> {
  const found: string[] = [];
  for (const pid of (await readdir("/proc")).filter((e) => /^\d+$/.test(e))) {
    const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (cmd.includes(`lab:${name}/`)) found.push(`process ${pid}: ${cmd.split("\0").slice(0, 3).join(" ")}`);
  }
  if (existsSync(`/run/netns/lab-${name}`)) found.push(`netns lab-${name}`);
  const links = JSON.parse((await execa("ip", ["-j", "link", "show"])).stdout) as {
    ifname: string;
    ifalias?: string;
  }[];
  for (const l of links) if (l.ifalias === `lab:${name}`) found.push(`link ${l.ifname}`);
  if (existsSync(join(home, "labs", name))) found.push(`state ${join(home, "labs", name)}`);
  return found;
}

async function writeTimings(): Promise<void> {
  if (!timings.length) return;
  const width = Math.max(...timings.map(([w]) => w.length));
  const table = [
    `e2e cluster (${name}: 1 master + 1 worker, TCG) — seconds`,
    ...timings.map(([w, s]) => `${w.padEnd(width)}  ${s.toFixed(1).padStart(6)}`),
  ].join("\n");
  await mkdir(join(repo, "test-results"), { recursive: true });
  await writeFile(join(repo, "test-results", "e2e-timings.txt"), table + "\n");
  await writeFile(
    join(repo, "test-results", "e2e-timings.json"),
    JSON.stringify(Object.fromEntries(timings), null, 2) + "\n",
  );
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lab-e2e-cluster-"));
  home = join(dir, "home");
  kubeconfig = join(dir, "kubeconfig");
  await writeFile(
    join(dir, "lab.yaml"),
    `apiVersion: lab/v1alpha1
kind: Lab
metadata:
  name: ${name}
spec:
  provider:
    type: qemu
  resources:
    cpus: 1
    memory: 1Gi
    disk: 10Gi
  masters:
    count: 1
  workers:
    count: 1
`,
  );
});

afterAll(async () => {
  await writeTimings().catch(() => undefined);
  if (dir) {
    await lab(["down", name], { reject: false });
    await rm(dir, { recursive: true, force: true });
  }
});

describe("cluster on real VMs (1 master + 1 worker, TCG)", () => {
  it("lab up brings up etcd and lab-server; the bootstrap reports every step", async () => {
    const t0 = Date.now();
    const up = await lab(["--json", "up"], { reject: false });
    const upMs = Date.now() - t0;
    const events = jsonLines(up.stdout);
    for (const e of events) {
      if (
        typeof e.elapsedMs !== "number" ||
        (e.state !== "done" && e.state !== "skipped" && e.state !== "failed")
      )
        continue;
      const step = String(e.step);
      if (step.startsWith("bootstrap.") || step === "image" || step === "network")
        timings.push([`${step}${e.state === "failed" ? " (failed)" : ""}`, seconds(e.elapsedMs)]);
      else if (step === "vm.ssh-ready" || step === "control-plane.ready" || step === "etcd.install")
        timings.push([`${step} ${String(e.node)}`, seconds(e.elapsedMs)]);
    }
    timings.push(["lab up total", seconds(upMs)]);
    const outcome = (id: string) =>
      events.find((e) => e.step === `bootstrap.${id}` && e.state !== "start")?.state;
    expect(outcome("pki")).toBe("done");
    expect(outcome("etcd")).toBe("done");
    expect(outcome("control-plane")).toBe("done");
    const failed = events.filter((e) => e.state === "failed" || e.type === "error");
    expect(up.exitCode, `${JSON.stringify(failed)} ${up.stderr}`).toBe(0);
    expect(outcome("wait-ready")).not.toBe("failed");
  });

  it("stock kubectl reaches the API with `lab kubeconfig`: readyz, namespaces, a ConfigMap round trip", async () => {
    await lab(["kubeconfig", name, "-o", kubeconfig]);
    const t0 = Date.now();
    const readyz = await until("kubectl get --raw /readyz", 120_000, async () => {
      const r = await kubectl(["get", "--raw", "/readyz"], { reject: false });
      return r.exitCode === 0 ? r.stdout : undefined;
    });
    timings.push(["kubectl first answer after lab up", seconds(Date.now() - t0)]);
    expect(readyz.trim()).toBe("ok");
    const ns = (await kubectl(["get", "ns", "-o", "name"])).stdout.split("\n");
    expect(ns).toEqual(expect.arrayContaining(["namespace/default", "namespace/kube-system"]));

    const t1 = Date.now();
    await kubectl(["create", "configmap", "e2e", "--from-literal=greeting=hello from the lab"]);
    const cm = JSON.parse((await kubectl(["get", "configmap", "e2e", "-o", "json"])).stdout) as {
      data: Record<string, string>;
    };
    expect(cm.data.greeting).toBe("hello from the lab");
    await kubectl(["delete", "configmap", "e2e"]);
    const gone = await kubectl(["get", "configmap", "e2e"], { reject: false });
    expect(gone.exitCode).not.toBe(0);
    expect(gone.stderr).toMatch(/NotFound|not found/);
    timings.push(["configmap create/get/delete", seconds(Date.now() - t1)]);
  });

  it("refuses a client without a certificate (401)", async () => {
    const server = /server: (\S+)/.exec(await readFile(kubeconfig, "utf8"))![1]!;
    const r = await execa("curl", [
      "-sk",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      `${server}/api/v1/namespaces`,
    ]);
    expect(r.stdout).toBe("401");
  });

  it("lab status shows the etcd member healthy and leader", async () => {
    const status = JSON.parse((await lab(["--json", "status", name])).stdout) as {
      etcd?: { name: string; healthy: boolean; leader: boolean }[];
    };
    expect(status.etcd).toEqual([expect.objectContaining({ name: "master-1", healthy: true, leader: true })]);
  });

  it("both nodes are Ready and the sample Deployment's pods run", async () => {
    const nodes = JSON.parse((await kubectl(["get", "nodes", "-o", "json"])).stdout) as {
      items: { metadata: { name: string }; status: { conditions: { type: string; status: string }[] } }[];
    };
    expect(
      nodes.items
        .map((n) => [n.metadata.name, n.status.conditions.find((c) => c.type === "Ready")?.status])
        .sort(),
    ).toEqual([
      ["master-1", "True"],
      ["worker-1", "True"],
    ]);
    const t0 = Date.now();
    await kubectl(["apply", "-f", join(repo, "examples/apps/sample.yaml")]);
    const running = await until("3 sample pods Running", 600_000, async () => {
      const pods = JSON.parse((await kubectl(["get", "pods", "-l", "app=sample", "-o", "json"])).stdout) as {
        items: { metadata: { name: string }; spec: { nodeName?: string }; status: { phase?: string } }[];
      };
      const up = pods.items.filter((p) => p.status.phase === "Running");
      return up.length === 3 ? up : undefined;
    });
    timings.push(["sample deployment: 3 pods Running", seconds(Date.now() - t0)]);
    // The master is tainted NoSchedule: every replica lands on the worker.
    expect(running.every((p) => p.spec.nodeName === "worker-1")).toBe(true);
    const svc = JSON.parse((await kubectl(["get", "service", "sample", "-o", "json"])).stdout) as {
      spec: { clusterIP: string };
    };
    expect(svc.spec.clusterIP).toMatch(/^10\.96\./);
  });

  it("kubectl logs and exec reach a pod on the worker through lab-server and lab-agent", async () => {
    const pods = JSON.parse((await kubectl(["get", "pods", "-l", "app=sample", "-o", "json"])).stdout) as {
      items: { metadata: { name: string } }[];
    };
    const pod = pods.items[0]!.metadata.name;
    const t0 = Date.now();
    const logs = await kubectl(["logs", pod, "--tail=5"], { reject: false });
    expect(logs.exitCode, logs.stderr).toBe(0);
    const exit3 = await kubectl(["exec", pod, "--", "sh", "-c", "echo out; exit 3"], { reject: false });
    expect(exit3.stdout).toBe("out");
    expect(exit3.exitCode).toBe(3);
    const cat = await kubectl(["exec", "-i", pod, "--", "cat"], { input: "hi\n" });
    expect(cat.stdout).toBe("hi");
    timings.push(["kubectl logs + 2 exec", seconds(Date.now() - t0)]);
  });

  it("lab down removes every process, namespace, link and file", async () => {
    const t0 = Date.now();
    await lab(["down", name]);
    timings.push(["lab down", seconds(Date.now() - t0)]);
    expect(await leftovers()).toEqual([]);
  });
});
