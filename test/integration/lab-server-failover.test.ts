/**
 * Two lab-server processes on one etcd, each running the scheduler and controller manager behind
 * leader election. SIGKILL the one holding the controller-manager lease: the other takes both
 * leases over within 15 s, and the Deployment keeps exactly its pods (none duplicated or lost).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import { LabClient } from "../../api/client.ts";
import { freePort, startEtcd, type TestEtcd } from "../helpers/etcd.ts";
import { FakeKubelet } from "../helpers/fake-kubelet.ts";
import { labServerArgv } from "../helpers/fault-load.ts";
import { kubeconfigYaml } from "../helpers/test-apiserver.ts";
import { makeTestPki, type TestPki } from "../helpers/test-pki.ts";
import { until } from "../helpers/until.ts";

let etcd: TestEtcd;
let pki: TestPki;
const servers: { proc: ChildProcess; client: LabClient; log: string[] }[] = [];
let kubelet: FakeKubelet | undefined;

const live = (pods: V1Pod[]): V1Pod[] => pods.filter((p) => !p.metadata?.deletionTimestamp);
const ready = (p: V1Pod): boolean =>
  !!p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");

beforeAll(async () => {
  etcd = await startEtcd();
  pki = await makeTestPki();
  const admin = await pki.client("admin", "admin", ["system:masters"]);
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    const url = `https://127.0.0.1:${port}`;
    const kubeconfig = join(pki.dir, `server-${i}.kubeconfig`);
    await writeFile(kubeconfig, kubeconfigYaml(url, pki.caCert, admin.cert, admin.key), { mode: 0o600 });
    const proc = spawn(
      process.execPath,
      labServerArgv(etcd.endpoint, pki, port, [
        ...["--kubeconfig", kubeconfig, "--leader-elect-lease-duration", "6"],
        ...["--leader-elect-renew-deadline", "4", "--leader-elect-retry-period", "1"],
        ...["--cluster-cidr", "10.244.0.0/16"],
      ]),
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    const log: string[] = [];
    proc.stderr?.on("data", (d: Buffer) => log.push(...d.toString().trim().split("\n")));
    const client = new LabClient({
      server: url,
      ca: await readFile(pki.caCert),
      cert: await readFile(admin.cert),
      key: await readFile(admin.key),
    });
    servers.push({ proc, client, log });
  }
  for (const s of servers) await until("API up", () => s.client.list("namespaces").then(() => true), 60_000);
});

afterAll(async () => {
  kubelet?.stop();
  for (const s of servers) {
    s.client.close();
    if (s.proc.exitCode === null && s.proc.signalCode === null) {
      const exited = new Promise((r) => s.proc.once("exit", r));
      s.proc.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      s.proc.kill("SIGKILL");
    }
  }
  await etcd?.stop();
  await pki?.cleanup();
});

it("30 replicas spread over 3 nodes; SIGKILL of the leading lab-server: the other takes over within 15 s, no pod duplicated or lost", async () => {
  const c0 = servers[0]!.client;
  const holder = (c: LabClient, name: string) =>
    c.get("leases", name, "kube-system").then((l) => l.spec?.holderIdentity || undefined);
  const cmHolder = await until("controller-manager leader", () => holder(c0, "kube-controller-manager"));
  await until("scheduler leader", () => holder(c0, "kube-scheduler"));
  const leaderIdx = servers.findIndex((s) => cmHolder.endsWith(`_${s.proc.pid}`));
  expect(leaderIdx).toBeGreaterThanOrEqual(0);
  const survivor = servers[1 - leaderIdx]!;
  const c = survivor.client;

  kubelet = new FakeKubelet(c, ["node-a", "node-b", "node-c"]);
  await kubelet.register();
  kubelet.start();
  await c.create("deployments", {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "web", namespace: "default" },
    spec: {
      replicas: 30,
      selector: { matchLabels: { app: "web" } },
      template: {
        metadata: { labels: { app: "web" } },
        spec: { containers: [{ name: "web", image: "nginx:1" }] },
      },
    },
  });
  const webPods = async () =>
    live((await c.list("pods", { namespace: "default", labelSelector: "app=web" })).items);
  await until("30 ready pods", async () => (await webPods()).filter(ready).length === 30, 60_000);
  const placed = await webPods();
  const perNode = ["node-a", "node-b", "node-c"].map(
    (n) => placed.filter((p) => p.spec?.nodeName === n).length,
  );
  expect(Math.max(...perNode)).toBeLessThanOrEqual(12);
  const before = new Set((await webPods()).map((p) => p.metadata?.uid));

  const t0 = Date.now();
  servers[leaderIdx]!.proc.kill("SIGKILL");
  const survivorId = `_${survivor.proc.pid}`;
  await until(
    "controller-manager takeover",
    async () => (await holder(c, "kube-controller-manager"))?.endsWith(survivorId),
    20_000,
  );
  await until(
    "scheduler takeover",
    async () => (await holder(c, "kube-scheduler"))?.endsWith(survivorId),
    20_000,
  );
  const takeoverMs = Date.now() - t0;
  expect(takeoverMs).toBeLessThan(15_000);
  // The new leader relisted everything: let it settle, then the same 30 pods must be there.
  await new Promise((r) => setTimeout(r, 2000));
  const after = await webPods();
  expect(after).toHaveLength(30);
  expect(new Set(after.map((p) => p.metadata?.uid))).toEqual(before);
  // And it acts: scaling works through the new leader.
  await c.patch("deployments", "web", { spec: { replicas: 33 } }, { namespace: "default" });
  await until("33 ready pods", async () => (await webPods()).filter(ready).length === 33);
  expect(survivor.log.some((l) => l.includes("kube-controller-manager: leading"))).toBe(true);
  console.log(`takeover after SIGKILL: ${takeoverMs} ms`);
});
