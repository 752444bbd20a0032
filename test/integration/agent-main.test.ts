/**
 * The lab-agent executable end to end: real etcd + lab-server, a real containerd in its own
 * network namespace, and node/main.ts as a child process with a node client certificate. The
 * Node registers and turns Ready, its Lease renews, a pod bound to it runs and is reachable,
 * `kubectl delete pod` removes it and its containers, and SIGTERM leaves containers running.
 */
import type { V1Lease, V1Node, V1Pod } from "@kubernetes/client-node";
import { execFile, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiServer } from "../../controlplane/apiserver.ts";
import { EtcdStore } from "../../controlplane/storage/etcd-store.ts";
import { buildExecutable } from "../../bootstrap/artifacts.ts";
import { renderNodeContainerdConfig } from "../../templates/lab-agent.ts";
import { POD_UID } from "../../node/labels.ts";
import {
  kubeconfigYaml,
  startTestApiServer,
  type TestApiServer,
  testServerOptions,
} from "../helpers/test-apiserver.ts";
import { applyYaml, kubectlFor } from "../helpers/kubectl.ts";
import { until as waitFor } from "../helpers/until.ts";
import { agentLogTail, startTestNode, type TestNode } from "./agent-node.ts";
import { killAgent, nodeAddress, spawnAgent, writeNodeKubeconfig } from "./agent-process.ts";

const run = promisify(execFile);
const NODE = "worker-a";

let api: TestApiServer;
/** A second lab-server on the same etcd, so the agent has somewhere to fail over to. */
let second: { server: ApiServer; store: EtcdStore; url: string; kubeconfig: string };
/** What kubectl talks to: the first server until the failover test stops it. */
let kubeconfigInUse: string;
let node: TestNode;
let agent: ChildProcess | undefined;
let agentLog = "";
let agentArgs: string[] = [];

function startAgent(cmd: string, args: string[]): void {
  agentLog = "";
  agent = spawnAgent(args, (text) => (agentLog += text), cmd, []);
}
let dir: string;

const kubectl = kubectlFor(() => kubeconfigInUse);

const kubectlApply = (yaml: string): Promise<void> => applyYaml(kubectl, dir, yaml);

const until = <T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> =>
  waitFor(what, fn, timeoutMs, { context: () => agentLogTail(agentLog) });

const getJson = async <T>(...args: string[]): Promise<T> =>
  JSON.parse(await kubectl("get", ...args, "-o", "json")) as T;

function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get(url, { timeout: 3000 }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve(body));
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timeout")));
  });
}

const podYaml = (name: string): string => `
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: default, labels: {app: web}}
spec:
  nodeName: ${NODE}
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: docker.io/lab/sample:latest
    imagePullPolicy: Never
    readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lab-agent-main-"));
  [api, node] = await Promise.all([startTestApiServer(), startTestNode()]);
  kubeconfigInUse = api.kubeconfig;
  const store = new EtcdStore({ hosts: api.etcd.endpoint });
  const server = new ApiServer({
    ...(await testServerOptions(store, api.pki)),
  });
  const url = `https://127.0.0.1:${await server.start("127.0.0.1", 0)}`;
  second = { server, store, url, kubeconfig: join(dir, "admin-second.kubeconfig") };
  await writeFile(second.kubeconfig, kubeconfigYaml(url, api.pki.caCert, api.admin.cert, api.admin.key), {
    mode: 0o600,
  });
  const kubeconfig = join(dir, "kubeconfig");
  await writeNodeKubeconfig(api, kubeconfig, NODE);
  const nodeIP = await nodeAddress(node);
  agentArgs = [
    `--kubeconfig=${kubeconfig}`,
    `--node-name=${NODE}`,
    `--node-ip=${nodeIP}`,
    `--pod-cidr=${node.podCidr}`,
    // a dead address first: the agent must fail over to the live server
    `--api-servers=https://127.0.0.1:1,${api.url},${second.url}`,
    "--cluster-dns=10.96.0.10",
    `--state-dir=${join(dir, "state")}`,
    "--register-with-taints=example.com/dedicated=lab:PreferNoSchedule",
    "--node-labels=node-role.kubernetes.io/worker=,example.com/zone=a",
    `--container-runtime-endpoint=${node.socket}`,
    `--pod-log-dir=${node.logRoot}`,
    `--cgroup-root=${node.cgroupRoot}`,
    `--netns=${node.netns}`,
  ];
  startAgent("node_modules/.bin/tsx", ["node/main.ts", ...agentArgs]);
}, 120_000);

afterAll(async () => {
  await killAgent(agent);
  await node?.destroy();
  await second?.server.stop().catch(() => undefined);
  await second?.store.close().catch(() => undefined);
  await api?.stop();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("lab-agent (node/main.ts) against lab-server and containerd", () => {
  it("registers the Node with labels, taints, pod CIDR, capacity and turns it Ready", async () => {
    const n = await until("node Ready", async () => {
      const n = await getJson<V1Node>("node", NODE);
      return n.status?.conditions?.find((c) => c.type === "Ready")?.status === "True" && n;
    });
    expect(n.metadata?.labels).toMatchObject({
      "kubernetes.io/hostname": NODE,
      "kubernetes.io/os": "linux",
      "node-role.kubernetes.io/worker": "",
      "example.com/zone": "a",
    });
    expect(n.spec?.podCIDR).toBe(node.podCidr);
    expect(n.spec?.taints).toEqual([
      { key: "example.com/dedicated", value: "lab", effect: "PreferNoSchedule" },
    ]);
    expect(n.status?.addresses).toContainEqual({
      type: "InternalIP",
      address: expect.stringMatching(/^10\./),
    });
    expect(Number(n.status?.capacity?.cpu)).toBeGreaterThan(0);
    expect(n.status?.capacity?.memory).toMatch(/^\d+Ki$/);
    expect(n.status?.nodeInfo?.containerRuntimeVersion).toMatch(/^containerd:\/\//);
    const table = await kubectl("get", "nodes");
    expect(table).toMatch(new RegExp(`${NODE}\\s+Ready`));
  }, 60_000);

  it("runs a pod bound to the node to Running/Ready with a pod IP it answers on", async () => {
    await kubectlApply(podYaml("web-1"));
    const started = Date.now();
    const pod = await until(
      "pod Running and Ready",
      async () => {
        const p = await getJson<V1Pod>("pod", "web-1");
        const ready = p.status?.conditions?.find((c) => c.type === "Ready")?.status === "True";
        return p.status?.phase === "Running" && ready && p.status.podIP ? p : undefined;
      },
      60_000,
    );
    console.log(`pod web-1 Running/Ready ${Date.now() - started} ms after create`);
    expect(pod.status?.hostIP).toMatch(/^10\./);
    expect(await httpGet(`http://${pod.status!.podIP!}:8080/`)).toContain("web-1");
    expect(await kubectl("get", "pod", "web-1")).toMatch(/web-1\s+1\/1\s+Running\s+0/);
  }, 90_000);

  it("renews its Lease in kube-node-lease", async () => {
    const first = await getJson<V1Lease>("lease", NODE, "-n", "kube-node-lease");
    expect(first.spec?.holderIdentity).toBe(NODE);
    const t0 = String(first.spec?.renewTime);
    const renewed = await until(
      "lease renewal",
      async () => {
        const l = await getJson<V1Lease>("lease", NODE, "-n", "kube-node-lease");
        return String(l.spec?.renewTime) !== t0 && l;
      },
      15_000,
    );
    expect(new Date(String(renewed.spec?.renewTime)).getTime()).toBeGreaterThan(new Date(t0).getTime());
  }, 20_000);

  it("kubectl delete pod removes the pod and its containers", async () => {
    const uid = (await getJson<V1Pod>("pod", "web-1")).metadata!.uid!;
    await kubectl("delete", "pod", "web-1", "--timeout=60s");
    await expect(kubectl("get", "pod", "web-1")).rejects.toThrow(/NotFound/);
    const sandboxes = await node.cri.listPodSandbox({ [POD_UID]: uid });
    expect(sandboxes).toEqual([]);
    const containers = await node.cri.listContainers({ labelSelector: { [POD_UID]: uid } });
    expect(containers).toEqual([]);
  }, 90_000);

  it("fails over to another API server when its server goes away", async () => {
    await api.server.stop();
    const stoppedAt = Date.now();
    kubeconfigInUse = second.kubeconfig;
    // the heartbeat goes on through the second server...
    await until(
      "lease renewed after the first server stopped",
      async () => {
        const l = await getJson<V1Lease>("lease", NODE, "-n", "kube-node-lease");
        return new Date(String(l.spec?.renewTime)).getTime() > stoppedAt;
      },
      20_000,
    );
    // ...and so does the pod watch: a new pod runs
    await kubectlApply(podYaml("web-2"));
    await until("web-2 Running", async () => {
      const p = await getJson<V1Pod>("pod", "web-2");
      return p.status?.phase === "Running";
    });
  }, 60_000);

  it("SIGTERM stops the agent but leaves running containers alone", async () => {
    const uid = (await getJson<V1Pod>("pod", "web-2")).metadata!.uid!;
    agent!.kill("SIGTERM");
    const code = await new Promise((r) => agent!.once("exit", (c) => r(c)));
    expect(code).toBe(0);
    const containers = await node.cri.listContainers({ labelSelector: { [POD_UID]: uid } });
    expect(containers.map((c) => c.state)).toEqual(["CONTAINER_RUNNING"]);
  }, 60_000);
});

describe("what join-nodes installs on a node", () => {
  it("renders a containerd config that containerd itself reads back with our settings", async () => {
    const file = join(dir, "config.toml");
    await writeFile(file, renderNodeContainerdConfig());
    const { stdout } = await run("containerd", ["--config", file, "config", "dump"]);
    expect(stdout).toMatch(/SystemdCgroup = false/);
    expect(stdout).toMatch(/restrict_oom_score_adj = true/);
    expect(stdout).toMatch(/bin_dir = "\/usr\/lib\/cni"/);
    expect(stdout).toMatch(/conf_dir = "\/etc\/cni\/net.d"/);
    expect(stdout).toMatch(/sandbox_image = "docker.io\/lab\/pause:1"/);
  });
});

describe("the lab-agent artifact", () => {
  it("bundles node/main.ts into an executable that answers --help and, restarted, adopts the pod", async () => {
    const a = await buildExecutable({ name: "lab-agent", entry: "node/main.ts", outDir: join(dir, "out") });
    const bundle = a.files[0]!.local;
    const { stdout } = await run(process.execPath, [bundle, "--help"], { cwd: dir });
    for (const flag of [
      "--kubeconfig",
      "--node-name",
      "--node-ip",
      "--pod-cidr",
      "--api-servers",
      "--cluster-domain",
      "--cluster-dns",
      "--service-cluster-ip-range",
      "--state-dir",
      "--register-with-taints",
      "--node-labels",
    ])
      expect(stdout).toContain(flag);

    // The bundle as the node runs it (no node_modules, no tsx) replaces the stopped agent: it talks
    // CRI, adopts web-2 without a second container, and tears it down on delete.
    const uid = (await getJson<V1Pod>("pod", "web-2")).metadata!.uid!;
    const before = await node.cri.listContainers({ labelSelector: { [POD_UID]: uid } });
    startAgent(process.execPath, [bundle, ...agentArgs]);
    await until("the bundled agent registered", async () => agentLog.includes("registered node"));
    await new Promise((r) => setTimeout(r, 3000)); // a few syncs: nothing may be started twice
    const after = await node.cri.listContainers({ labelSelector: { [POD_UID]: uid } });
    expect(after.map((c) => c.id)).toEqual(before.map((c) => c.id));
    const rss = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${agent!.pid}/status`, "utf8"))?.[1];
    console.log(`bundled lab-agent RSS: ${Math.round(Number(rss) / 1024)} MiB`);
    await kubectl("delete", "pod", "web-2", "--timeout=60s");
    expect(await node.cri.listContainers({ labelSelector: { [POD_UID]: uid } })).toEqual([]);
  }, 90_000);
});
