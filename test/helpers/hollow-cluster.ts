/**
 * The pieces of the integration tests that run lab's bins as processes: hollow agents
 * (`lab-agent --hollow`) and lab-server, their stderr kept for the message of a wait that timed
 * out, a stop that waits for each to exit, the control loops started in-process against a
 * LabClient, and kubectl's exit code and output.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { setMaxListeners } from "node:events";
import { fileURLToPath } from "node:url";
import type { V1Node } from "@kubernetes/client-node";

export const AGENT_BIN = fileURLToPath(new URL("../../bin/lab-agent.js", import.meta.url));
export const SERVER_BIN = fileURLToPath(new URL("../../bin/lab-server.js", import.meta.url));

/** A process of a test with the lines it wrote to stderr. */
export interface LoggedProcess {
  name: string;
  proc: ChildProcess;
  log: string[];
}

/** Spawns `bin`, its stderr kept line by line in `log`, and adds it to `into`. */
export function spawnLogged(into: LoggedProcess[], name: string, bin: string, args: string[]): ChildProcess {
  const proc = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
  const log: string[] = [];
  proc.stderr?.on("data", (d: Buffer) => log.push(...d.toString().trim().split("\n")));
  into.push({ name, proc, log });
  return proc;
}

/** One hollow node: `lab-agent --hollow --node-name NAME`, a process of its own, a lease every 2 s. */
export function startHollowAgent(
  into: LoggedProcess[],
  kubeconfig: string,
  name: string,
  extraArgs: string[] = [],
): ChildProcess {
  return spawnLogged(into, name, AGENT_BIN, [
    ...["--hollow", "--node-name", name, "--kubeconfig", kubeconfig],
    ...["--node-lease-renew-seconds", "2", ...extraArgs],
  ]);
}

/** The last lines each process wrote. */
export function processLogs(procs: LoggedProcess[]): string {
  return procs.map((p) => `${p.name}:\n  ${p.log.slice(-8).join("\n  ")}`).join("\n");
}

/** SIGTERM, SIGKILL after 10 s; resolves once the process has exited (at once if it had). */
export async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill("SIGTERM");
  const t = setTimeout(() => proc.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(t);
}

export const nodeReady = (n: V1Node): boolean =>
  !!n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");

/** Control loops run in-process: each started with a signal of its own, all aborted and awaited by `stop`. */
export class Loops {
  private readonly stops: AbortController[] = [];
  private readonly done: Promise<void>[] = [];

  start(f: (signal: AbortSignal) => Promise<void>): void {
    const ac = new AbortController();
    setMaxListeners(0, ac.signal);
    this.stops.push(ac);
    this.done.push(f(ac.signal));
  }

  async stop(): Promise<void> {
    for (const s of this.stops) s.abort();
    await Promise.allSettled(this.done);
  }
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** kubectl with `kubeconfig`: its exit code (-1 when it did not exit by itself) and output; `input` is its stdin. */
export function kubectlResult(
  kubeconfig: string,
  args: string[],
  o: { timeoutMs?: number; input?: string } = {},
): Promise<KubectlResult> {
  return new Promise((resolve) => {
    const child = execFile(
      "kubectl",
      ["--kubeconfig", kubeconfig, ...args],
      { timeout: o.timeoutMs ?? 60_000 },
      (err, stdout, stderr) => {
        const code = err
          ? typeof (err as { code?: unknown }).code === "number"
            ? (err as { code: number }).code
            : -1
          : 0;
        resolve({ code, stdout, stderr });
      },
    );
    if (o.input !== undefined) child.stdin?.end(o.input);
  });
}
