/**
 * `kubectl logs` and `kubectl exec` end to end: stock kubectl → lab-server (pods/log, pods/exec)
 * → lab-agent's HTTPS port (node/main.ts as a child process) → containerd in its own network
 * namespace. Also: the agent's port refuses every client but lab-server's kubelet-client identity.
 */
import type { V1Node, V1Pod } from "@kubernetes/client-node";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiServer } from "../../controlplane/apiserver.ts";
import { EtcdStore } from "../../controlplane/storage/etcd-store.ts";
import { KUBELET_CLIENT_CN, KUBELET_CLIENT_GROUP } from "../../node/server/server.ts";
import {
  kubeconfigYaml,
  startTestApiServer,
  type TestApiServer,
  testServerOptions,
} from "../helpers/test-apiserver.ts";
import { makeTestPki, type TestPki } from "../helpers/test-pki.ts";
import { until as waitFor } from "../helpers/until.ts";
import { agentLogTail, startTestNode, type TestNode } from "./agent-node.ts";
import { killAgent, nodeAgentFlags, spawnAgent } from "./agent-process.ts";

const NODE = "worker-logs";

let api: TestApiServer;
let proxying: { server: ApiServer; store: EtcdStore };
let otherCa: TestPki;
let node: TestNode;
let agent: ChildProcess | undefined;
let agentLog = "";
let dir: string;
let kubeconfig: string;
let agentPort = 0;
let nodeCert: { cert: string; key: string };

/** kubectl's exit code and output, without throwing on a non-zero exit. */
function kubectl(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      "/usr/bin/kubectl",
      args,
      { env: { ...process.env, KUBECONFIG: kubeconfig }, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    if (input !== undefined) child.stdin!.end(input);
  });
}

async function ok(...args: string[]): Promise<string> {
  const r = await kubectl(args);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")}: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

const until = <T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> =>
  waitFor(what, fn, timeoutMs, { context: () => agentLogTail(agentLog) });

const pod = async (name: string): Promise<V1Pod> =>
  JSON.parse(await ok("get", "pod", name, "-o", "json")) as V1Pod;

/** GET on the agent's port with the given client certificate: the status code, or the TLS error. */
function agentGet(cert?: { cert: string; key: string }): Promise<number | string> {
  return new Promise((resolve) => {
    void (async () => {
      const req = request(
        {
          host: "127.0.0.1",
          port: agentPort,
          path: `/containerLogs/default/ticker/main`,
          ca: await readFile(api.pki.caCert),
          ...(cert ? { cert: await readFile(cert.cert), key: await readFile(cert.key) } : {}),
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on("error", (err) => resolve(`refused: ${err.message}`));
      req.end();
    })();
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lab-logs-exec-"));
  [api, node, otherCa] = await Promise.all([startTestApiServer(), startTestNode(), makeTestPki()]);
  const kubeletClient = await api.pki.client("kubelet-client", KUBELET_CLIENT_CN, [KUBELET_CLIENT_GROUP]);
  // lab-server as bootstrap runs it: with its kubelet-client identity
  const store = new EtcdStore({ hosts: api.etcd.endpoint });
  const server = new ApiServer({
    ...(await testServerOptions(store, api.pki)),
    kubeletClient: {
      cert: await readFile(kubeletClient.cert),
      key: await readFile(kubeletClient.key),
      ca: await readFile(api.pki.caCert),
    },
  });
  proxying = { server, store };
  const url = `https://127.0.0.1:${await server.start("127.0.0.1", 0)}`;
  kubeconfig = join(dir, "admin.kubeconfig");
  await writeFile(kubeconfig, kubeconfigYaml(url, api.pki.caCert, api.admin.cert, api.admin.key), {
    mode: 0o600,
  });

  nodeCert = await api.pki.client("node", `system:node:${NODE}`, ["system:nodes"]);
  const nodeKubeconfig = join(dir, "node.kubeconfig");
  await writeFile(nodeKubeconfig, kubeconfigYaml(url, api.pki.caCert, nodeCert.cert, nodeCert.key, NODE), {
    mode: 0o600,
  });
  // The agent listens on loopback in the host namespace, so the Node's InternalIP is 127.0.0.1
  // (the test serving certificate's SAN); its pods still live in the node's network namespace.
  const args = [
    ...nodeAgentFlags(node, {
      kubeconfig: nodeKubeconfig,
      nodeName: NODE,
      nodeIP: "127.0.0.1",
      stateDir: join(dir, "state"),
    }),
    "--port=0",
    "--address=127.0.0.1",
    `--tls-cert-file=${api.pki.serverCert}`,
    `--tls-private-key-file=${api.pki.serverKey}`,
    `--client-ca-file=${api.pki.caCert}`,
  ];
  agent = spawnAgent(args, (text) => (agentLog += text));
  const n = await until("node registered with its agent port", async () => {
    const n = JSON.parse(await ok("get", "node", NODE, "-o", "json")) as V1Node;
    return (n.status?.daemonEndpoints?.kubeletEndpoint?.Port ?? 10250) !== 10250 && n;
  });
  agentPort = n.status!.daemonEndpoints!.kubeletEndpoint!.Port;

  const manifest = `
apiVersion: v1
kind: Pod
metadata: {name: ticker, namespace: default}
spec:
  nodeName: ${NODE}
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: docker.io/lab/sample:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "i=0; while true; do echo line-$i; i=$((i+1)); sleep 1; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: crasher, namespace: default}
spec:
  nodeName: ${NODE}
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: docker.io/lab/sample:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "echo run-$(cat /proc/sys/kernel/random/uuid); sleep 1; exit 1"]
`;
  await writeFile(join(dir, "pods.yaml"), manifest);
  await ok("apply", "-f", join(dir, "pods.yaml"));
  await until("ticker Running", async () => (await pod("ticker")).status?.phase === "Running", 60_000);
}, 120_000);

afterAll(async () => {
  await killAgent(agent);
  await node?.destroy();
  await proxying?.server.stop().catch(() => undefined);
  await proxying?.store.close().catch(() => undefined);
  await api?.stop();
  await otherCa?.cleanup();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("kubectl logs and exec through lab-server to lab-agent", () => {
  it("kubectl logs shows the container's lines; --tail and --timestamps shape them", async () => {
    await until("three lines logged", async () => (await ok("logs", "ticker")).includes("line-2"));
    const all = await ok("logs", "ticker");
    expect(all).toMatch(/^line-0\nline-1\nline-2\n/);
    const tail = await ok("logs", "ticker", "--tail=2");
    expect(tail.trim().split("\n")).toHaveLength(2);
    expect(all.endsWith(tail) || all.trim().split("\n").length < 3).toBe(true);
    const stamped = await ok("logs", "ticker", "--tail=1", "--timestamps");
    expect(stamped).toMatch(/^\d{4}-\d\d-\d\dT\S+ line-\d+\n$/);
  }, 30_000);

  it("kubectl logs -f streams lines written after it started", async () => {
    const before = (await ok("logs", "ticker")).trim().split("\n").length;
    const f = spawn("/usr/bin/kubectl", ["logs", "-f", "ticker", "--tail=1"], {
      env: { ...process.env, KUBECONFIG: kubeconfig },
    });
    let out = "";
    f.stdout.on("data", (d: Buffer) => (out += d.toString()));
    try {
      // line numbers start at 0: line-(before+1) did not exist when -f started
      await until("a new line through -f", async () => out.includes(`line-${before + 1}\n`), 15_000);
    } finally {
      f.kill("SIGKILL");
    }
  }, 30_000);

  it("kubectl logs --previous shows the run before a restart", async () => {
    const p = await until(
      "crasher restarted and logged again",
      async () => {
        const p = await pod("crasher");
        return (p.status?.containerStatuses?.[0]?.restartCount ?? 0) >= 1 && p;
      },
      40_000,
    );
    expect(p.status?.containerStatuses?.[0]?.restartCount).toBeGreaterThanOrEqual(1);
    const current = await until("current run logged", async () => {
      const s = await ok("logs", "crasher");
      return /run-\S+/.test(s) && s;
    });
    const previous = await ok("logs", "crasher", "--previous");
    expect(previous).toMatch(/^run-[0-9a-f-]+\n$/);
    expect(current).toMatch(/^run-[0-9a-f-]+\n$/);
    expect(previous).not.toBe(current);
    const none = await kubectl(["logs", "ticker", "--previous"]);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/previous terminated container "main" in pod "ticker" not found/);
  }, 60_000);

  it("kubectl exec returns the command's exit code and output, over WebSocket v5", async () => {
    const r = await kubectl(["exec", "ticker", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe("out\n");
    expect(r.stderr).toContain("err\n");
    expect((await kubectl(["exec", "ticker", "--", "true"])).code).toBe(0);
    expect(agentLog).toContain("exec (v5.channel.k8s.io)");
  }, 30_000);

  it("kubectl exec -i passes stdin through and ends it", async () => {
    const r = await kubectl(["exec", "-i", "ticker", "--", "sh", "-c", "cat; echo done"], "hi\nthere\n");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("hi\nthere\ndone\n");
  }, 30_000);

  it("answers with a clear Status for a wrong container, a missing pod and attach", async () => {
    const wrong = await kubectl(["exec", "ticker", "-c", "nope", "--", "true"]);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/container nope is not valid for pod ticker/);
    const missing = await kubectl(["logs", "no-such-pod"]);
    expect(missing.stderr).toMatch(/pods "no-such-pod" not found/);
    const attach = await kubectl(["attach", "ticker"]);
    expect(attach.code).not.toBe(0);
    expect(attach.stderr).toMatch(/pods\/attach is not supported by lab-server/);
  }, 30_000);

  it("the agent's port refuses any client but lab-server's kubelet-client identity", async () => {
    const foreign = await otherCa.client("intruder", KUBELET_CLIENT_CN, [KUBELET_CLIENT_GROUP]);
    expect(await agentGet(foreign)).toMatch(/^refused/);
    expect(await agentGet()).toMatch(/^refused/);
    expect(await agentGet(nodeCert)).toBe(403);
    expect(await agentGet(api.admin)).toBe(403);
  }, 30_000);
});
