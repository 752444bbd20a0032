/**
 * Pod volumes, init containers and env from ConfigMaps/Secrets, end to end: real etcd + lab-server,
 * a real containerd in its own network namespace, and node/main.ts with a node certificate (so the
 * node identity reads ConfigMaps and Secrets through the API). What the app container sees is read
 * from its CRI log file, as `kubectl logs` would show it.
 */
import type { V1Pod } from "@kubernetes/client-node";
import { execFile, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApiServer, type TestApiServer } from "../helpers/test-apiserver.ts";
import { applyYaml, kubectlFor } from "../helpers/kubectl.ts";
import { until as waitFor } from "../helpers/until.ts";
import { agentLogTail, startTestNode, type TestNode } from "./agent-node.ts";
import { killAgent, nodeAddress, nodeAgentFlags, spawnAgent, writeNodeKubeconfig } from "./agent-process.ts";

const run = promisify(execFile);
const NODE = "worker-v";
const IMAGE = "docker.io/lab/sample:latest";

let api: TestApiServer;
let node: TestNode;
let agent: ChildProcess | undefined;
let agentLog = "";
let dir: string;

const kubectl = kubectlFor(() => api.kubeconfig);

const apply = (yaml: string): Promise<void> => applyYaml(kubectl, dir, yaml);

const until = <T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> =>
  waitFor(what, fn, timeoutMs, { context: () => agentLogTail(agentLog) });

const getPod = async (name: string): Promise<V1Pod> =>
  JSON.parse(await kubectl("get", "pod", name, "-o", "json")) as V1Pod;

/** The container's output from its CRI log file (`<ts> stdout F <line>`). */
async function containerOutput(pod: V1Pod, container: string): Promise<string> {
  const m = pod.metadata!;
  const file = join(node.logRoot, `${m.namespace}_${m.name}_${m.uid}`, container, "0.log");
  const text = await readFile(file, "utf8");
  return text
    .split("\n")
    .filter(Boolean)
    .map((l) => l.split(" ").slice(3).join(" "))
    .join("\n");
}

const volumesPod = `
apiVersion: v1
kind: Pod
metadata: {name: vols, namespace: default, labels: {app: vols, tier: demo}}
spec:
  nodeName: ${NODE}
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: fill
    image: ${IMAGE}
    imagePullPolicy: Never
    command: [sh, -c, 'sleep 3; echo written-by-init > /work/index.html']
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: app
    image: ${IMAGE}
    imagePullPolicy: Never
    command:
    - sh
    - -c
    - |
      echo "work=$(cat /work/index.html)"
      echo "file=$(cat /etc/cfg/key)"
      echo "item=$(cat /etc/items/renamed)"
      echo "env=$PREFIX_key"
      echo "ref=$GREETING"
      echo "secret=$(cat /etc/sec/token)"
      echo "pod=$POD_NAME"
      echo "labels=$(cat /etc/info/labels | tr '\\n' ' ')"
      echo "scratch=$(grep ' /scratch ' /proc/mounts | cut -d' ' -f3)"
      touch /etc/cfg/new 2>/dev/null && echo cfg=rw || echo cfg=ro
      echo done
      exec sleep 3600
    envFrom: [{configMapRef: {name: app-config}, prefix: PREFIX_}]
    env:
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: app-config, key: greeting}}}
    volumeMounts:
    - {name: work, mountPath: /work}
    - {name: cfg, mountPath: /etc/cfg}
    - {name: cfg-items, mountPath: /etc/items}
    - {name: sec, mountPath: /etc/sec}
    - {name: info, mountPath: /etc/info}
    - {name: scratch, mountPath: /scratch}
  volumes:
  - {name: work, emptyDir: {}}
  - {name: cfg, configMap: {name: app-config}}
  - {name: cfg-items, configMap: {name: app-config, items: [{key: greeting, path: renamed}]}}
  - {name: sec, secret: {secretName: app-secret, defaultMode: 0400}}
  - {name: info, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}
  - {name: scratch, emptyDir: {medium: Memory, sizeLimit: 8Mi}}
`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lab-agent-volumes-"));
  [api, node] = await Promise.all([startTestApiServer(), startTestNode()]);
  const kubeconfig = join(dir, "kubeconfig");
  await writeNodeKubeconfig(api, kubeconfig, NODE);
  const nodeIP = await nodeAddress(node);
  agent = spawnAgent(
    [
      ...nodeAgentFlags(node, {
        kubeconfig: kubeconfig,
        nodeName: NODE,
        nodeIP: nodeIP,
        stateDir: join(dir, "state"),
      }),
      "--cluster-dns=10.96.0.10",
    ],
    (text) => (agentLog += text),
  );
  await apply(`
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config, namespace: default}
data: {key: from-configmap, greeting: hello}
---
apiVersion: v1
kind: Secret
metadata: {name: app-secret, namespace: default}
data: {token: ${Buffer.from("s3cret").toString("base64")}}
`);
}, 120_000);

afterAll(async () => {
  await killAgent(agent);
  await node?.destroy();
  await api?.stop();
  // a tmpfs the agent could not unmount would survive rm: unmount what is left under our dir
  const mounts = (await readFile("/proc/mounts", "utf8")).split("\n").map((l) => l.split(" ")[1] ?? "");
  for (const m of mounts.filter((m) => dir && m.startsWith(dir)).reverse())
    await run("umount", ["-l", m]).catch(() => {});
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("lab-agent pod volumes, init containers and env from ConfigMaps/Secrets", () => {
  it("runs the init container first (kubectl shows Init:0/1), then the app sees volumes and env", async () => {
    await apply(volumesPod);
    const started = Date.now();
    let seen = "";
    await until("kubectl STATUS Init:0/1", async () => {
      seen = await kubectl("get", "pod", "vols");
      return /\bInit:0\/1\b/.test(seen);
    }).catch(async (err: Error) => {
      throw new Error(
        `${err.message}\nkubectl showed: ${seen}\n${JSON.stringify((await getPod("vols")).status)}`,
      );
    });
    const pending = await getPod("vols");
    expect(pending.status?.phase).toBe("Pending");
    expect(pending.status?.conditions?.find((c) => c.type === "Initialized")?.status).toBe("False");
    const pod = await until(
      "pod Running",
      async () => {
        const p = await getPod("vols");
        return p.status?.phase === "Running" && p;
      },
      60_000,
    );
    console.log(`pod with an init container (sleep 3) Running ${Date.now() - started} ms after create`);
    expect(pod.status?.initContainerStatuses?.[0]?.state?.terminated).toMatchObject({
      exitCode: 0,
      reason: "Completed",
    });
    expect(pod.status?.conditions?.find((c) => c.type === "Initialized")?.status).toBe("True");
    const out = await until("app output", async () => {
      const o = await containerOutput(pod, "app");
      return o.includes("done") && o;
    });
    expect(out.split("\n")).toEqual([
      "work=written-by-init",
      "file=from-configmap",
      "item=hello",
      "env=from-configmap",
      "ref=hello",
      "secret=s3cret",
      "pod=vols",
      'labels=app="vols" tier="demo"',
      "scratch=tmpfs",
      "cfg=ro",
      "done",
    ]);
    expect(await kubectl("get", "pod", "vols")).toMatch(/vols\s+1\/1\s+Running/);
  }, 120_000);

  it("a missing ConfigMap leaves the container in CreateContainerConfigError until it is created", async () => {
    await apply(`
apiVersion: v1
kind: Pod
metadata: {name: needs-config, namespace: default}
spec:
  nodeName: ${NODE}
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: ${IMAGE}
    imagePullPolicy: Never
    envFrom: [{configMapRef: {name: late-config}}]
`);
    const waiting = await until("CreateContainerConfigError", async () => {
      const w = (await getPod("needs-config")).status?.containerStatuses?.[0]?.state?.waiting;
      return w?.reason === "CreateContainerConfigError" && w;
    });
    expect(waiting.message).toBe('configmap "late-config" not found');
    expect(await kubectl("get", "pod", "needs-config")).toMatch(
      /needs-config\s+0\/1\s+CreateContainerConfigError/,
    );
    await apply(`
apiVersion: v1
kind: ConfigMap
metadata: {name: late-config, namespace: default}
data: {LATE: "1"}
`);
    await until(
      "pod Running once the ConfigMap exists",
      async () => (await getPod("needs-config")).status?.phase === "Running",
    );
  }, 60_000);

  it("a missing ConfigMap volume keeps the pod ContainerCreating with one FailedMount event, until it exists", async () => {
    await apply(`
apiVersion: v1
kind: Pod
metadata: {name: needs-volume, namespace: default}
spec:
  nodeName: ${NODE}
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: ${IMAGE}
    imagePullPolicy: Never
    command: [sh, -c, 'echo "late=$(cat /etc/late/greeting)"; exec sleep 3600']
    volumeMounts: [{name: late, mountPath: /etc/late}]
  volumes:
  - {name: late, configMap: {name: late-volume}}
`);
    const message = 'MountVolume.SetUp failed for volume "late" : configmap "late-volume" not found';
    const failedMounts = async () => {
      const out = await kubectl(
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=needs-volume",
        "-o",
        "json",
      );
      const items = (
        JSON.parse(out) as {
          items: { reason: string; type: string; message: string; source?: { component?: string } }[];
        }
      ).items;
      return items.filter((e) => e.reason === "FailedMount");
    };
    const events = await until("a FailedMount event", async () => {
      const e = await failedMounts();
      return e.length > 0 && e;
    });
    expect(events[0]).toMatchObject({ type: "Warning", message, source: { component: "kubelet" } });
    const waiting = (await getPod("needs-volume")).status?.containerStatuses?.[0]?.state?.waiting;
    expect(waiting?.reason).toBe("ContainerCreating");
    expect(await kubectl("get", "pod", "needs-volume")).toMatch(/needs-volume\s+0\/1\s+ContainerCreating/);
    // the agent keeps retrying (every sync) without repeating the event
    await new Promise((r) => setTimeout(r, 6_000));
    expect(await failedMounts()).toHaveLength(1);
    expect((await getPod("needs-volume")).status?.phase).toBe("Pending");
    await apply(`
apiVersion: v1
kind: ConfigMap
metadata: {name: late-volume, namespace: default}
data: {greeting: hello-late}
`);
    const pod = await until("pod Running once the ConfigMap exists", async () => {
      const p = await getPod("needs-volume");
      return p.status?.phase === "Running" && p;
    });
    let out = "";
    await until("the volume's file in the container", async () => {
      out = await containerOutput(pod, "app").catch((err: Error) => err.message);
      return out.includes("late=hello-late");
    }).catch((err: Error) => {
      throw new Error(`container output: ${out}\n${err.message}`);
    });
  }, 90_000);

  it("refreshes a running pod's ConfigMap volume when the ConfigMap changes", async () => {
    const pod = await getPod("vols");
    const file = join(dir, "state", "pods", pod.metadata!.uid!, "volumes", "cfg", "key");
    expect(await readFile(file, "utf8")).toBe("from-configmap");
    await kubectl("patch", "configmap", "app-config", "--type=merge", "-p", '{"data":{"key":"changed"}}');
    const started = Date.now();
    await until("volume file refreshed", async () => (await readFile(file, "utf8")) === "changed", 30_000);
    console.log(`ConfigMap change visible in the volume after ${Date.now() - started} ms`);
  }, 60_000);

  it("deleting the pod removes its volume directory and unmounts its tmpfs", async () => {
    const pod = await getPod("vols");
    const podDir = join(dir, "state", "pods", pod.metadata!.uid!);
    expect(existsSync(join(podDir, "volumes", "work", "index.html"))).toBe(true);
    expect(await readFile("/proc/mounts", "utf8")).toContain(join(podDir, "volumes", "scratch"));
    await kubectl("delete", "pod", "vols", "--timeout=60s");
    expect(existsSync(podDir)).toBe(false);
    expect(await readFile("/proc/mounts", "utf8")).not.toContain(podDir);
  }, 90_000);
});
