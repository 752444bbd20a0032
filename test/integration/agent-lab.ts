/**
 * A one-node lab for kubectl-through-the-agent tests: real etcd, lab-server with its
 * kubelet-client identity (so pods/log, exec, attach, portforward reach the node), a test node
 * (containerd in its own network namespace) and lab-agent as a child process serving its HTTPS
 * port on loopback. `kubectl` runs stock kubectl 1.32 against it.
 */
import type { V1Node } from "@kubernetes/client-node";
import { execFile, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiServer } from "../../controlplane/apiserver.ts";
import { EtcdStore } from "../../controlplane/storage/etcd-store.ts";
import { KUBELET_CLIENT_CN, KUBELET_CLIENT_GROUP } from "../../node/server/server.ts";
import {
  kubeconfigYaml,
  startTestApiServer,
  type TestApiServer,
  testServerOptions,
} from "../helpers/test-apiserver.ts";
import { until as waitFor } from "../helpers/until.ts";
import { agentLogTail, startTestNode, type TestNode } from "./agent-node.ts";
import { killAgent, nodeAgentFlags, spawnAgent } from "./agent-process.ts";

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface AgentLab {
  api: TestApiServer;
  node: TestNode;
  dir: string;
  kubeconfig: string;
  /** lab-server's URL (https://127.0.0.1:PORT). */
  url: string;
  agentPort: number;
  nodeName: string;
  nodeCert: { cert: string; key: string };
  agentLog(): string;
  /** kubectl's exit code and output, without throwing on a non-zero exit. */
  kubectl(args: string[], input?: string, timeoutMs?: number): Promise<KubectlResult>;
  /** kubectl's stdout; throws with its stderr on a non-zero exit. */
  ok(...args: string[]): Promise<string>;
  until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs?: number): Promise<T>;
  stop(): Promise<void>;
}

export async function startAgentLab(nodeName: string): Promise<AgentLab> {
  const dir = await mkdtemp(join(tmpdir(), "lab-agent-lab-"));
  let log = "";
  let agent: ChildProcess | undefined;
  let proxying: { server: ApiServer; store: EtcdStore } | undefined;
  const [api, node] = await Promise.all([startTestApiServer(), startTestNode()]);
  const stop = async (): Promise<void> => {
    await killAgent(agent);
    await node.destroy();
    await proxying?.server.stop().catch(() => undefined);
    await proxying?.store.close().catch(() => undefined);
    await api.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
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
    const kubeconfig = join(dir, "admin.kubeconfig");
    await writeFile(kubeconfig, kubeconfigYaml(url, api.pki.caCert, api.admin.cert, api.admin.key), {
      mode: 0o600,
    });
    const nodeCert = await api.pki.client("node", `system:node:${nodeName}`, ["system:nodes"]);
    const nodeKubeconfig = join(dir, "node.kubeconfig");
    await writeFile(
      nodeKubeconfig,
      kubeconfigYaml(url, api.pki.caCert, nodeCert.cert, nodeCert.key, nodeName),
      { mode: 0o600 },
    );

    const kubectl = (args: string[], input?: string, timeoutMs = 30_000): Promise<KubectlResult> =>
      new Promise((resolve) => {
        const child = execFile(
          "/usr/bin/kubectl",
          args,
          { env: { ...process.env, KUBECONFIG: kubeconfig }, timeout: timeoutMs },
          (err, stdout, stderr) => {
            const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
            resolve({ code, stdout, stderr });
          },
        );
        if (input !== undefined) child.stdin!.end(input);
      });
    const ok = async (...args: string[]): Promise<string> => {
      const r = await kubectl(args);
      if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")}: exit ${r.code}: ${r.stderr}`);
      return r.stdout;
    };
    const until = <T>(
      what: string,
      fn: () => Promise<T | undefined | false>,
      timeoutMs = 30_000,
    ): Promise<T> => waitFor(what, fn, timeoutMs, { context: () => agentLogTail(log) });

    // The agent listens on loopback in the host namespace, so the Node's InternalIP is 127.0.0.1
    // (the test serving certificate's SAN); its pods still live in the node's network namespace.
    agent = spawnAgent(
      [
        ...nodeAgentFlags(node, {
          kubeconfig: nodeKubeconfig,
          nodeName,
          nodeIP: "127.0.0.1",
          stateDir: join(dir, "state"),
        }),
        "--port=0",
        "--address=127.0.0.1",
        `--tls-cert-file=${api.pki.serverCert}`,
        `--tls-private-key-file=${api.pki.serverKey}`,
        `--client-ca-file=${api.pki.caCert}`,
      ],
      (text) => (log += text),
    );
    const n = await until("node registered with its agent port", async () => {
      const n = JSON.parse(await ok("get", "node", nodeName, "-o", "json")) as V1Node;
      return (n.status?.daemonEndpoints?.kubeletEndpoint?.Port ?? 10250) !== 10250 && n;
    });
    return {
      api,
      node,
      dir,
      kubeconfig,
      url,
      agentPort: n.status!.daemonEndpoints!.kubeletEndpoint!.Port,
      nodeName,
      nodeCert,
      agentLog: () => log,
      kubectl,
      ok,
      until,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
