/** An agent process for agent tests: its flags for a test node, start and kill. */
import { spawn, type ChildProcess } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { kubeconfigYaml, type TestApiServer } from "../helpers/test-apiserver.ts";
import type { TestNode } from "./agent-node.ts";

/** Writes to `file` a kubeconfig for `server` (default: the test API server) as node `nodeName` (system:nodes). */
export async function writeNodeKubeconfig(
  api: TestApiServer,
  file: string,
  nodeName: string,
  server = api.url,
): Promise<void> {
  const cert = await api.pki.client("node", `system:node:${nodeName}`, ["system:nodes"]);
  await writeFile(file, kubeconfigYaml(server, api.pki.caCert, cert.cert, cert.key, nodeName), {
    mode: 0o600,
  });
}

/** The node's IPv4 address: its end of the veth to the host (eth0 in its network namespace). */
export async function nodeAddress(node: TestNode): Promise<string> {
  return (await node.inNetns(["ip", "-4", "-o", "addr", "show", "dev", "eth0"])).match(/inet (\S+)\//)![1]!;
}

/** The agent flags that point it at a test node: its runtime socket, dirs, cgroup root and namespace. */
export function nodeAgentFlags(
  node: TestNode,
  o: { kubeconfig: string; nodeName: string; nodeIP: string; stateDir: string },
): string[] {
  return [
    `--kubeconfig=${o.kubeconfig}`,
    `--node-name=${o.nodeName}`,
    `--node-ip=${o.nodeIP}`,
    `--pod-cidr=${node.podCidr}`,
    `--state-dir=${o.stateDir}`,
    `--container-runtime-endpoint=${node.socket}`,
    `--pod-log-dir=${node.logRoot}`,
    `--cgroup-root=${node.cgroupRoot}`,
    `--netns=${node.netns}`,
  ];
}

/** Starts an agent process (`node/main.ts` through tsx unless `cmd` says otherwise); its output goes to `onOutput`. */
export function spawnAgent(
  args: string[],
  onOutput: (text: string) => void,
  cmd = "node_modules/.bin/tsx",
  cmdArgs = ["node/main.ts"],
): ChildProcess {
  const agent = spawn(cmd, [...cmdArgs, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  agent.stdout!.on("data", (d: Buffer) => onOutput(d.toString()));
  agent.stderr!.on("data", (d: Buffer) => onOutput(d.toString()));
  return agent;
}

/** SIGKILLs the agent if it still runs; resolves once it has exited. */
export async function killAgent(agent: ChildProcess | undefined): Promise<void> {
  if (agent && agent.exitCode === null && agent.signalCode === null) {
    agent.kill("SIGKILL");
    await new Promise((r) => agent.once("exit", r));
  }
}
