/** An agent process for agent tests: its flags for a test node, start and kill. */
import { spawn, type ChildProcess } from "node:child_process";
import type { TestNode } from "./agent-node.ts";

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
