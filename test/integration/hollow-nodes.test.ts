/**
 * Three hollow agents (the `lab-agent --hollow` bin, one process each) on a standalone lab-server
 * over a real etcd. A 30-replica Deployment made with kubectl spreads over them (at most 12 per
 * node), every pod Running and Ready with a unique IP from its node's podCIDR. One agent is
 * SIGKILLed: its pods run elsewhere within grace + toleration + 30 s (node-monitor grace 20 s and
 * pod eviction timeout 10 s here, set by lab-server's flags). A restartPolicy: Never pod becomes
 * Succeeded after --hollow-run-seconds; a deleted pod is gone at once (the hollow agent finishes the
 * graceful deletion).
 */
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { V1Pod } from "@kubernetes/client-node";
import { execa } from "execa";
import { afterAll, beforeAll, expect, it } from "vitest";
import { LabClient } from "../../api/client.ts";
import { cidrRange } from "../../lib/ipv4.ts";
import { freePort, startEtcd, type TestEtcd } from "../helpers/etcd.ts";
import {
  AGENT_BIN,
  nodeReady,
  processLogs,
  SERVER_BIN,
  spawnLogged,
  stopProcess,
  type LoggedProcess,
} from "../helpers/hollow-cluster.ts";
import { until as untilTrue } from "../helpers/until.ts";

const GRACE_S = 20;
const TOLERATION_S = 10;
const RUN_S = 2;

let etcd: TestEtcd;
let dir: string;
let kubeconfig: string;
let client: LabClient;
const procs: LoggedProcess[] = [];

const start = (name: string, bin: string, args: string[]): ChildProcess =>
  spawnLogged(procs, name, bin, args);
const logs = (): string => processLogs(procs);

const until = <T>(what: string, f: () => Promise<T | undefined | false>, ms: number): Promise<T> =>
  untilTrue(what, f, ms, { everyMs: 500, context: logs });

const isReady = (p: V1Pod): boolean =>
  p.status?.phase === "Running" &&
  !!p.status.conditions?.some((c) => c.type === "Ready" && c.status === "True");

function inCidr(ip: string, cidr: string): boolean {
  const c = cidrRange(cidr)!;
  const n = ip.split(".").reduce((a, o) => a * 256 + Number(o), 0);
  return n >= c.base && n < c.base + c.size;
}

const agentArgs = (name: string): string[] => [
  "--hollow",
  "--node-name",
  name,
  "--kubeconfig",
  kubeconfig,
  "--hollow-run-seconds",
  String(RUN_S),
  "--node-lease-renew-seconds",
  "5",
];

beforeAll(async () => {
  etcd = await startEtcd();
  dir = await mkdtemp(join(tmpdir(), "lab-hollow-"));
  kubeconfig = join(dir, "kubeconfig");
  const port = await freePort();
  start("lab-server", SERVER_BIN, [
    ...["--etcd-servers", etcd.endpoint, "--listen", `127.0.0.1:${port}`],
    ...["--cert-dir", join(dir, "pki"), "--write-kubeconfig", kubeconfig],
    ...["--node-monitor-grace-period", String(GRACE_S), "--pod-eviction-timeout", String(TOLERATION_S)],
  ]);
  await until("the admin kubeconfig", () => stat(kubeconfig).then(() => true), 90_000);
  client = await LabClient.fromKubeconfig(kubeconfig);
  await until("lab-server to answer", () => client.list("namespaces").then(() => true), 60_000);
  for (const n of ["hollow-1", "hollow-2", "hollow-3"]) start(n, AGENT_BIN, agentArgs(n));
  await until(
    "3 Ready hollow nodes with a podCIDR",
    async () => {
      const nodes = (await client.list("nodes")).items;
      return nodes.filter((n) => nodeReady(n) && n.spec?.podCIDR).length === 3;
    },
    90_000,
  );
});

afterAll(async () => {
  client?.close();
  for (const { proc } of procs.reverse()) await stopProcess(proc);
  await etcd?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

it("hollow nodes register with the asked capacity, a Lease and the hollow label", async () => {
  const node = await client.get("nodes", "hollow-2");
  expect(node.status?.capacity).toEqual({ cpu: "8", memory: "32Gi", pods: "110" });
  expect(node.status?.allocatable).toEqual({ cpu: "8", memory: "32Gi", pods: "110" });
  expect(node.metadata?.labels?.["lab.io/hollow"]).toBe("true");
  const lease = await client.get("leases", "hollow-2", "kube-node-lease");
  expect(lease.spec?.holderIdentity).toBe("hollow-2");
  const renewed = new Date(String(lease.spec?.renewTime)).getTime();
  await until(
    "a lease renewal",
    async () => {
      const l = await client.get("leases", "hollow-2", "kube-node-lease");
      return new Date(String(l.spec?.renewTime)).getTime() > renewed;
    },
    20_000,
  );
});

it("30 replicas spread over 3 hollow nodes; SIGKILL of one: its pods run elsewhere within grace + toleration + 30 s", async () => {
  const created = await execa(
    "/usr/bin/kubectl",
    [
      "--kubeconfig",
      kubeconfig,
      "create",
      "deployment",
      "spread",
      "--image=lab/sample:latest",
      "--replicas=30",
    ],
    { reject: false },
  );
  expect(created.exitCode, created.stderr).toBe(0);
  const spread = async (): Promise<V1Pod[]> =>
    (await client.list("pods", { namespace: "default", labelSelector: "app=spread" })).items.filter(
      (p) => !p.metadata?.deletionTimestamp,
    );
  const pods = await until(
    "30 Running and Ready pods",
    async () => {
      const ps = await spread();
      return ps.filter(isReady).length === 30 && ps;
    },
    120_000,
  );
  const perNode = new Map<string, number>();
  for (const p of pods) perNode.set(p.spec!.nodeName!, (perNode.get(p.spec!.nodeName!) ?? 0) + 1);
  expect([...perNode.keys()].sort()).toEqual(["hollow-1", "hollow-2", "hollow-3"]);
  expect(Math.max(...perNode.values())).toBeLessThanOrEqual(12);
  // IPs: unique, from the node's CIDR, hostIP the node's InternalIP
  const nodes = new Map((await client.list("nodes")).items.map((n) => [n.metadata!.name!, n]));
  const ips = pods.map((p) => p.status!.podIP!);
  expect(new Set(ips).size).toBe(30);
  for (const p of pods) {
    const node = nodes.get(p.spec!.nodeName!)!;
    expect(inCidr(p.status!.podIP!, node.spec!.podCIDR!), `${p.status?.podIP} in ${node.spec?.podCIDR}`).toBe(
      true,
    );
    expect(p.status?.hostIP).toBe(node.status?.addresses?.find((a) => a.type === "InternalIP")?.address);
    expect(p.status?.containerStatuses?.[0]?.state?.running).toBeDefined();
  }

  const victim = procs.find((p) => p.name === "hollow-1")!.proc;
  const t0 = Date.now();
  victim.kill("SIGKILL");
  const boundS = GRACE_S + TOLERATION_S + 30;
  await until(
    "30 Running pods on the surviving nodes",
    async () => (await spread()).filter((p) => isReady(p) && p.spec?.nodeName !== "hollow-1").length === 30,
    boundS * 1000 + 10_000,
  );
  const healedS = (Date.now() - t0) / 1000;
  expect(healedS).toBeLessThanOrEqual(boundS);
  // the dead node is seen as such
  const dead = await client.get("nodes", "hollow-1");
  expect(dead.status?.conditions?.find((c) => c.type === "Ready")?.status).toBe("Unknown");
  expect(dead.spec?.taints?.some((t) => t.key === "node.kubernetes.io/unreachable")).toBe(true);
});

it("a restartPolicy: Never pod runs, then is Succeeded after --hollow-run-seconds; a deleted pod is gone at once", async () => {
  await client.create("pods", {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "once", namespace: "default" },
    spec: {
      restartPolicy: "Never",
      nodeName: "hollow-2",
      containers: [{ name: "job", image: "lab/sample:latest" }],
    },
  });
  const running = await until(
    "pod once Running",
    async () => {
      const p = await client.get("pods", "once", "default");
      return p.status?.phase === "Running" && p;
    },
    30_000,
  );
  const t0 = Date.now();
  const done = await until(
    "pod once Succeeded",
    async () => {
      const p = await client.get("pods", "once", "default");
      return p.status?.phase === "Succeeded" && p;
    },
    30_000,
  );
  expect(Date.now() - t0).toBeLessThan((RUN_S + 10) * 1000);
  const term = done.status?.containerStatuses?.[0]?.state?.terminated;
  expect(term?.exitCode).toBe(0);
  expect(term?.reason).toBe("Completed");
  const ran =
    new Date(String(term?.finishedAt)).getTime() - new Date(String(running.status?.startTime)).getTime();
  expect(ran).toBeGreaterThanOrEqual(RUN_S * 1000 - 1000);
  expect(done.status?.conditions?.find((c) => c.type === "Ready")?.status).toBe("False");

  // graceful deletion (30 s by default) is finished by the node at once
  const victim = (
    await client.list("pods", { namespace: "default", labelSelector: "app=spread" })
  ).items.find((p) => p.spec?.nodeName === "hollow-3" && !p.metadata?.deletionTimestamp)!;
  const t1 = Date.now();
  await client.delete("pods", victim.metadata!.name!, "default");
  await until(
    "the deleted pod to be gone",
    async () =>
      client.get("pods", victim.metadata!.name!, "default").then(
        () => false,
        (err: { code?: number }) => err.code === 404,
      ),
    20_000,
  );
  expect(Date.now() - t1).toBeLessThan(15_000);
});
