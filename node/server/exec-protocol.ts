/**
 * The Kubernetes remote-command WebSocket protocol (what kubectl 1.30+ speaks for exec): every
 * binary message starts with a channel byte — 0 stdin, 1 stdout, 2 stderr, 3 error (a Status JSON
 * carrying the exit code), 4 resize; v5 adds 255 = close, whose next byte names the channel the
 * client has finished writing (stdin EOF). Pure.
 */

export const STDIN = 0;
export const STDOUT = 1;
export const STDERR = 2;
export const ERROR = 3;
export const RESIZE = 4;
export const CLOSE = 255;

/** What the agent accepts, best first. kubectl 1.32 offers v5 first (then v4, v3, v2). */
export const EXEC_SUBPROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"] as const;

export function chooseSubprotocol(offered: Iterable<string>): string | undefined {
  const set = new Set(offered);
  return EXEC_SUBPROTOCOLS.find((p) => set.has(p));
}

export function frame(channel: number, data: Buffer | string): Buffer {
  const body = typeof data === "string" ? Buffer.from(data) : data;
  return Buffer.concat([Buffer.from([channel]), body]);
}

/** The error-channel Status for a finished command (v4+): Success, or the exit code as a cause. */
export function exitStatus(command: string[], exitCode: number): Record<string, unknown> {
  if (exitCode === 0) return { metadata: {}, status: "Success" };
  return {
    metadata: {},
    status: "Failure",
    message: `command terminated with non-zero exit code: error executing command [${command.join(" ")}], exit code ${exitCode}`,
    reason: "NonZeroExitCode",
    details: { causes: [{ reason: "ExitCode", message: String(exitCode) }] },
  };
}

export function failureStatus(message: string): Record<string, unknown> {
  return { metadata: {}, status: "Failure", message, reason: "InternalError", code: 500 };
}

export interface ExecRequest {
  command: string[];
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

export function parseExecQuery(q: URLSearchParams): ExecRequest {
  const bool = (k: string): boolean => q.get(k) === "true" || q.get(k) === "1";
  const command = q.getAll("command");
  if (command.length === 0) throw new Error("you must specify at least one command for the container");
  return {
    command,
    stdin: bool("input") || bool("stdin"),
    stdout: bool("output") || bool("stdout"),
    stderr: bool("error") || bool("stderr"),
    tty: bool("tty"),
  };
}
