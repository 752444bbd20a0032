/**
 * Provider nspawn for real (root, systemd-container): the provisioner contract; the default
 * topology as nspawn machines (examples/nspawn.yaml) through the real `lab` process up to all nodes
 * Ready, with the topology's limits in the machines' cgroups, a Deployment that scales and heals, a
 * Service that answers, and a `lab down` that leaves nothing; two nspawn labs side by side; and
 * `lab down` after `kill -9` of `lab up` (and of a machine's systemd-nspawn, whose init keeps
 * running). Run: npx vitest run --project e2e test/e2e/nspawn.test.ts
 */
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import type { V1Node, V1Pod, V1Service } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findNspawnProcesses, nspawnProvisioner } from "../../provisioners/nspawn/index.ts";
import { E2eLab, jsonLines, repo, Timings, until } from "./helpers.ts";
import { hostLeftovers, provisionerContract } from "./provisioner-contract.ts";

const small = (masters: number, workers: number) => `apiVersion: lab/v1alpha1
kind: Lab
metadata:
  name: NAME
spec:
  provider:
    type: nspawn
  resources:
    cpus: 1
    memory: 1Gi
  masters:
    count: ${masters}
  workers:
    count: ${workers}
`;

const timings = new Timings(
  "nspawn",
  "e2e nspawn (examples/nspawn.yaml: 3 masters + 2 workers as nspawn machines)",
);
afterAll(async () => {
  await timings.write().catch(() => undefined);
});

provisionerContract("nspawn", async () => ({ provisioner: nspawnProvisioner, topology: small(1, 1) }));

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
  const app = (f: string) => join(repo, "examples/apps", f);
  const items = async <T>(args: string[]) => (await l.kubectlJson<{ items: T[] }>(args)).items;
  const readyPods = async () =>
    (await items<V1Pod>(["get", "pods", "-l", "app=sample"])).filter(
      (p) =>
        !p.metadata?.deletionTimestamp &&
        p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
    );
  const onNode = (node: string, script: string) =>
    l.lab([
      "ssh",
      "--lab",
      l.name,
      node,
      "--",
      `echo ${Buffer.from(script).toString("base64")} | base64 -d | sudo sh`,
    ]);

  beforeAll(async () => {
    const text = readFileSync(join(repo, "examples/nspawn.yaml"), "utf8");
    l = await E2eLab.create("ns", text.replace(/^(\s*name:\s*)\S+\s*$/m, "$1NAME"));
    const t0 = Date.now();
    const up = await l.lab(["--json", "up", "--wait", "10m"], { reject: false });
    timings.add("lab up to 5 nodes Ready", Date.now() - t0);
    for (const e of jsonLines(up.stdout))
      if (typeof e.elapsedMs === "number" && e.state === "done" && String(e.step).startsWith("bootstrap."))
        timings.add(`  ${String(e.step)}`, e.elapsedMs);
    if (up.exitCode !== 0) throw new Error(`lab up failed (exit ${up.exitCode}): ${up.stderr}`);
    await l.lab(["kubeconfig", l.name, "-o", l.kubeconfig]);
  });

  afterAll(async () => {
    await l?.remove();
  });

  it("all 5 nodes Ready; each machine under the topology's memory and CPU limits", async () => {
    const nodes = await items<V1Node>(["get", "nodes"]);
    expect(nodes.map((n) => n.metadata!.name).sort()).toEqual([
      "master-1",
      "master-2",
      "master-3",
      "worker-1",
      "worker-2",
    ]);
    for (const n of nodes) expect(n.status!.conditions!.find((c) => c.type === "Ready")!.status).toBe("True");
    const limit = (node: string, file: string) =>
      readFile(`/sys/fs/cgroup/${file.split(".")[0]}/lab-nspawn/${l.name}/${node}/${file}`, "utf8").then(
        (s) => Number(s.trim()),
      );
    expect(await limit("master-1", "memory.limit_in_bytes")).toBe(2048 * 1024 * 1024);
    expect(await limit("worker-1", "memory.limit_in_bytes")).toBe(1536 * 1024 * 1024);
    expect(await limit("worker-2", "cpu.cfs_quota_us")).toBe(100_000);
    // Inside, the machine sees its own cgroup as the root and containerd's pods below it.
    const inside = await onNode("worker-1", "cat /proc/1/cgroup | grep memory");
    expect(inside.stdout.trim()).toMatch(/memory:\/$/);
  });

  it("a Deployment rolls out, scales to 4 and replaces a deleted pod; its Service answers from a pod", async () => {
    await timings.time("apply + rollout (3 replicas)", async () => {
      await l.kubectl(["apply", "-f", app("sample.yaml"), "-f", app("client.yaml")]);
      await l.kubectl(["rollout", "status", "deployment/sample", "--timeout=5m"], { timeoutMs: 330_000 });
    });
    expect(await readyPods()).toHaveLength(3);
    await timings.time("scale to 4", async () => {
      await l.kubectl(["scale", "deployment/sample", "--replicas=4"]);
      await until(
        "4 sample pods Ready",
        180_000,
        async () => ((await readyPods()).length === 4 ? true : undefined),
        1000,
      );
    });
    const victim = (await readyPods())[0]!.metadata!.name!;
    await timings.time("self-heal: a deleted pod replaced", async () => {
      await l.kubectl(["delete", "pod", victim, "--wait=false"]);
      await until(
        "the deleted pod replaced, 4 Ready again",
        180_000,
        async () => {
          const pods = await readyPods();
          return pods.length === 4 && !pods.some((p) => p.metadata!.name === victim) ? true : undefined;
        },
        1000,
      );
    });
    const svc = await l.kubectlJson<V1Service>(["get", "service", "sample"]);
    const clusterIP = svc.spec!.clusterIP!;
    await until("client pod Running", 180_000, async () =>
      (await l.kubectlJson<V1Pod>(["get", "pod", "client"])).status?.phase === "Running" ? true : undefined,
    );
    const client = await l.kubectlJson<V1Pod>(["get", "pod", "client"]);
    const id = client.status!.containerStatuses![0]!.containerID!.replace(/^containerd:\/\//, "");
    const node = client.spec!.nodeName!;
    // The pod's busybox, in all of the pod's namespaces (as test/e2e/cluster.test.ts does).
    const loop = `for i in 1 2 3 4 5 6 7 8 9 10 11 12; do timeout 3 wget -q -O - http://${clusterIP}/ || echo FAILED; done`;
    const answers = await onNode(
      node,
      `pid=$(ctr -n k8s.io task ls | awk '$1=="${id}"{print $2}'); nsenter -t $pid -m -u -i -n -p sh -c '${loop}'`,
    );
    const lines = answers.stdout
      .split("\n")
      .map((s) => s.trim())
      .filter(Boolean);
    expect(lines.filter((x) => x === "FAILED")).toEqual([]);
    const names = new Set((await readyPods()).map((p) => p.metadata!.name));
    expect(lines.every((x) => names.has(x))).toBe(true);
    expect(new Set(lines).size).toBeGreaterThan(1);
  });

  it("lab down leaves no process, namespace, link, cgroup, mount or state", async () => {
    await l.lab(["down", l.name]);
    expect(await allLeftovers(l)).toEqual([]);
    const nspawns = await execa("pgrep", ["-af", "systemd-nspawn"], { reject: false });
    expect(nspawns.stdout.split("\n").filter((x) => x.includes(`lab:${l.name}/`))).toEqual([]);
  });
});

describe("two nspawn labs side by side", () => {
  let a: E2eLab;
  let b: E2eLab;
  beforeAll(async () => {
    a = await E2eLab.create("sa", small(1, 0));
    b = await E2eLab.create("sb", small(1, 0));
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
    l = await E2eLab.create("nk", small(1, 1));
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
