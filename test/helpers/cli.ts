/** Runs the real `lab` executable as a user would, with its own LAB_HOME. */
import { execa, type Result } from "execa";
import { fileURLToPath } from "node:url";

export const LAB_BIN = fileURLToPath(new URL("../../bin/lab.js", import.meta.url));
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

export interface LabRun {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export async function runLab(
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string; input?: string; timeoutMs?: number } = {},
): Promise<LabRun> {
  const r: Result = await execa(LAB_BIN, args, {
    reject: false,
    cwd: opts.cwd ?? REPO_ROOT,
    env: { NO_COLOR: "1", ...opts.env },
    timeout: opts.timeoutMs ?? 60_000,
    ...(opts.input !== undefined ? { input: opts.input } : { stdin: "ignore" }),
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** True when output looks like a leaked stack trace. */
export function hasStackTrace(text: string): boolean {
  return /\n\s+at .+\(.+:\d+:\d+\)/.test(text) || /^\s+at file:\/\//m.test(text);
}

/**
 * Another process that takes lab `name`'s lock (under LAB_HOME `home`) as `command`. With "hold" it
 * prints `locked` and keeps the lock until a byte arrives on its stdin, then exits 0; with "die" it
 * is SIGKILLed holding it (a lock left behind).
 */
export function lockingProcess(name: string, home: string, command: string, then: "hold" | "die") {
  const after =
    then === "hold"
      ? `console.log("locked"); process.stdin.once("data", () => process.exit(0));`
      : `process.kill(process.pid, "SIGKILL");`;
  const script = `import { LabState } from "./topology/state.ts";
    const s = new LabState(${JSON.stringify(name)}, ${JSON.stringify(home)});
    await s.lock(${JSON.stringify(command)});
    ${after}`;
  return execa("node", ["--import", "tsx", "-e", script], {
    cwd: REPO_ROOT,
    stdin: "pipe",
    reject: then === "hold",
  });
}
