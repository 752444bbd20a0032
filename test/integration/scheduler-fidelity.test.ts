/**
 * Scheduler and controller fidelity (issue 26) on a real etcd + lab-server, three hollow nodes (the
 * `lab-agent --hollow` bin, one process each) and kubectl 1.32: matchFields node affinity (the pod
 * bound runs on its hollow node), the PodScheduled=False condition of a pod that fits nowhere (and
 * `kubectl wait` on it), a spec.nodeName placeholder refused as invalid, a pod whose claim is
 * missing, a controller error logged with its message, and a file mixing served and unserved kinds
 * under kubectl's client-side validation.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CoreV1Event, V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LabClient } from "../../api/client.ts";
import type { LoopsConfig } from "../../controlplane/controller-manager.ts";
import { runControllers, runScheduler } from "../../controlplane/controller-manager.ts";
import { clientLeaseStore, clientWriter } from "../../controlplane/lab-client-loops.ts";
import { clientListWatch } from "../../api/list-watch.ts";
import { loopEventLine } from "../../controlplane/loops-main.ts";
import {
  kubectlResult,
  Loops,
  nodeReady,
  processLogs,
  startHollowAgent,
  stopProcess,
  type KubectlResult,
  type LoggedProcess,
} from "../helpers/hollow-cluster.ts";
import { kubeconfigYaml, startTestApiServer, type TestApiServer } from "../helpers/test-apiserver.ts";
import { until as untilTrue } from "../helpers/until.ts";

const NODES = ["node-1", "node-2", "node-3"];

let api: TestApiServer;
let client: LabClient;
let nodeClient: LabClient;
const agents: LoggedProcess[] = [];
let dir: string;
const loops = new Loops();
const logLines: string[] = [];

const kubectl = (...args: string[]): Promise<KubectlResult> => kubectlResult(api.kubeconfig, args);
const until = <T>(what: string, f: () => Promise<T | undefined | false>, ms = 30_000): Promise<T> =>
  untilTrue(what, f, ms, { context: () => processLogs(agents) });

const getPod = (name: string): Promise<V1Pod> => client.get("pods", name, "default");
const scheduledCondition = (p: V1Pod) => p.status?.conditions?.find((c) => c.type === "PodScheduled");

async function createPod(name: string, spec: Partial<V1Pod["spec"]>): Promise<void> {
  await client.create("pods", {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: "default" },
    spec: { containers: [{ name: "c", image: "lab/sample:latest" }], ...spec },
  });
}

async function eventsFor(name: string): Promise<CoreV1Event[]> {
  return (await client.list("events", { namespace: "default", fieldSelector: `involvedObject.name=${name}` }))
    .items;
}

function loopsConfig(identity: string, writer: LabClient): LoopsConfig {
  return {
    lw: clientListWatch(client),
    writer: clientWriter(writer),
    leases: clientLeaseStore(client),
    identity,
    leaderElection: { leaseDurationSeconds: 4, renewDeadlineMs: 3000, retryPeriodMs: 500 },
    nodeLifecycle: { gracePeriodMs: 60_000, podEvictionTimeoutMs: 60_000, monitorPeriodMs: 1000 },
    onEvent: (e) => logLines.push(loopEventLine(e, identity)),
  };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lab-scheduler-fidelity-"));
  api = await startTestApiServer();
  client = await LabClient.fromKubeconfig(api.kubeconfig);
  // A writer the API refuses most writes to: a node's identity may create events, not pods.
  const cert = await api.pki.client("node-1", "system:node:node-1", ["system:nodes"]);
  const nodeKubeconfig = join(dir, "node.kubeconfig");
  await writeFile(nodeKubeconfig, kubeconfigYaml(api.url, api.pki.caCert, cert.cert, cert.key, "node-1"));
  nodeClient = await LabClient.fromKubeconfig(nodeKubeconfig);
  for (const n of NODES) startHollowAgent(agents, api.kubeconfig, n);
  await until(
    "3 Ready hollow nodes",
    async () => (await client.list("nodes")).items.filter(nodeReady).length === NODES.length,
    90_000,
  );
  loops.start((s) => runScheduler(loopsConfig("sched-1", client), s));
  // The controllers, not leader-elected, writing with the node's identity: every pod they create
  // is refused, and that error must reach the log with its message.
  loops.start((s) => runControllers(loopsConfig("cm-refused", nodeClient), s));
}, 120_000);

afterAll(async () => {
  await loops.stop();
  for (const { proc } of agents) await stopProcess(proc);
  client?.close();
  nodeClient?.close();
  await api?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("scheduler fidelity", () => {
  it("honours matchFields: NotIn node-1 places the pod elsewhere (Running there), In node-3 on node-3", async () => {
    const affinity = (operator: string, node: string) => ({
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [{ matchFields: [{ key: "metadata.name", operator, values: [node] }] }],
        },
      },
    });
    await createPod("not-on-1", { affinity: affinity("NotIn", "node-1") });
    await createPod("on-3", { affinity: affinity("In", "node-3") });
    const notOn1 = await until("not-on-1 bound", async () => (await getPod("not-on-1")).spec?.nodeName);
    expect(["node-2", "node-3"]).toContain(notOn1);
    // the hollow node it was bound to runs it
    const running = await until("not-on-1 Running", async () => {
      const p = await getPod("not-on-1");
      return p.status?.phase === "Running" && p;
    });
    expect(running.spec?.nodeName).toBe(notOn1);
    expect(running.status?.containerStatuses?.[0]?.state?.running).toBeDefined();
    expect(scheduledCondition(running)).toMatchObject({ status: "True" });
    expect(await until("on-3 bound", async () => (await getPod("on-3")).spec?.nodeName)).toBe("node-3");
    const bound = await getPod("on-3");
    expect(scheduledCondition(bound)).toMatchObject({ status: "True" });
  });

  it("gives a pod that fits nowhere PodScheduled=False/Unschedulable; kubectl wait sees it", async () => {
    await createPod("nowhere", { nodeSelector: { nonexistent: "true" } });
    const message = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.";
    const waited = await kubectl(
      "wait",
      "--for=condition=PodScheduled=false",
      "pod/nowhere",
      "--timeout=30s",
    );
    expect(waited).toMatchObject({ code: 0, stdout: "pod/nowhere condition met\n" });
    const pod = await getPod("nowhere");
    expect(scheduledCondition(pod)).toMatchObject({
      type: "PodScheduled",
      status: "False",
      reason: "Unschedulable",
      message,
    });
    expect(pod.spec?.nodeName).toBeUndefined();
    const events = await eventsFor("nowhere");
    expect(events.filter((e) => e.reason === "FailedScheduling").map((e) => e.message)).toEqual([message]);
    // Retries (every node change and every 10 s) do not rewrite an unchanged condition.
    const rv = pod.metadata?.resourceVersion;
    await new Promise((r) => setTimeout(r, 3000)); // the hollow nodes renew their leases meanwhile
    expect((await getPod("nowhere")).metadata?.resourceVersion).toBe(rv);
    const described = await kubectl("describe", "pod", "nowhere");
    expect(described.stdout).toMatch(/PodScheduled\s+False/);
  });

  it("refuses a spec.nodeName that is no DNS subdomain: kubectl apply says invalid, nothing is stored", async () => {
    const file = join(dir, "badnode.yaml");
    await writeFile(
      file,
      'apiVersion: v1\nkind: Pod\nmetadata: {name: badnode}\nspec:\n  nodeName: "replace this with a node"\n  containers: [{name: c, image: lab/sample:latest}]\n',
    );
    const r = await kubectl("apply", "-f", file);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain('The Pod "badnode" is invalid');
    expect(r.stderr).toContain('spec.nodeName: Invalid value: "replace this with a node"');
    await expect(getPod("badnode")).rejects.toMatchObject({ code: 404 });
  });

  it("keeps a pod whose PersistentVolumeClaim is missing Pending, saying which claim", async () => {
    await createPod("needs-pvc", {
      containers: [{ name: "c", image: "lab/sample:latest", volumeMounts: [{ name: "d", mountPath: "/d" }] }],
      volumes: [{ name: "d", persistentVolumeClaim: { claimName: "missing" } }],
    });
    const message = '0/3 nodes are available: persistentvolumeclaim "missing" not found.';
    const cond = await until("needs-pvc unschedulable", async () => {
      const c = scheduledCondition(await getPod("needs-pvc"));
      return c?.status === "False" && c;
    });
    expect(cond).toMatchObject({ reason: "Unschedulable", message });
    const pod = await getPod("needs-pvc");
    expect(pod.spec?.nodeName).toBeUndefined();
    expect(pod.status?.phase).toBe("Pending");
    const events = await eventsFor("needs-pvc");
    expect(events.find((e) => e.reason === "FailedScheduling")?.message).toBe(message);
  });
});

describe("controller errors", () => {
  it("logs a failed reconcile with its key and the API's message", async () => {
    await client.create("replicasets", {
      apiVersion: "apps/v1",
      kind: "ReplicaSet",
      metadata: { name: "refused", namespace: "default" },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: "refused" } },
        template: {
          metadata: { labels: { app: "refused" } },
          spec: { containers: [{ name: "c", image: "lab/sample:latest" }] },
        },
      },
    });
    const line = await until("the controller's error line", async () =>
      logLines.find((l) => l.startsWith("controller-manager: default/refused: ")),
    );
    expect(line).toMatch(
      /^controller-manager: default\/refused: .*User "system:node:node-1" cannot create resource "pods" in API group "" in the namespace "default"/,
    );
  });
});

describe("kubectl apply of a file mixing served and unserved kinds", () => {
  it("creates the served objects and names each unserved kind as upstream does", async () => {
    const file = join(dir, "mixed.yaml");
    await writeFile(
      file,
      [
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: mixed-a}\ndata: {k: v}",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec:\n  rules: [{host: x.example}]",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny}\nspec:\n  podSelector: {}",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: mixed-b}\ndata: {k: v}",
      ].join("\n---\n"),
    );
    const r = await kubectl("apply", "-f", file);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("configmap/mixed-a created\nconfigmap/mixed-b created\n");
    expect(r.stderr).toContain(
      `resource mapping not found for name: "web" namespace: "" from "${file}": no matches for kind "Ingress" in version "networking.k8s.io/v1"\nensure CRDs are installed first`,
    );
    expect(r.stderr).toContain(
      `resource mapping not found for name: "deny" namespace: "" from "${file}": no matches for kind "NetworkPolicy" in version "networking.k8s.io/v1"`,
    );
    expect(r.stderr).not.toMatch(/proto:|failed to download openapi|error validating/);
    for (const n of ["mixed-a", "mixed-b"])
      expect((await client.get("configmaps", n, "default")).data).toEqual({ k: "v" });
    // Served group-versions only: the OpenAPI v3 document of an unserved one is a 404.
    const v3 = await kubectl("get", "--raw", "/openapi/v3/apis/networking.k8s.io/v1");
    expect(v3.code).toBe(1);
    expect(v3.stderr).toMatch(/NotFound/);
  });
});
