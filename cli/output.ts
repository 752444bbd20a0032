/** How the CLI talks: one clear line per error, JSON with --json, stack traces only with --debug. */
import { LabError, ProblemsError, formatLocatedProblem } from "../topology/errors.ts";

/** Documented exit codes (docs/operations.md). */
export const EXIT = {
  ok: 0,
  /** Bad input: topology, flags, manifests. */
  usage: 1,
  /** The host is missing something or refused (tools, permissions, addresses in use). */
  host: 2,
  /** Another command holds the lab's lock. */
  locked: 3,
  /** A readiness check failed or timed out. */
  notReady: 4,
  /** A bug in lab. */
  internal: 70,
} as const;

export interface GlobalOptions {
  json?: boolean;
  debug?: boolean;
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + "\n");
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof LabError) {
    if (err.code === "LAB_LOCKED") return EXIT.locked;
    if (err.code.startsWith("NOT_READY")) return EXIT.notReady;
    return err.source === "host" ? EXIT.host : err.source === "internal" ? EXIT.internal : EXIT.usage;
  }
  return EXIT.internal;
}

/** Prints an error the way the user should see it and returns the exit code. */
export function reportError(err: unknown, opts: GlobalOptions): number {
  const code = exitCodeFor(err);
  if (opts.json) {
    const body =
      err instanceof ProblemsError
        ? { error: { code: err.code, problems: err.problems } }
        : err instanceof LabError
          ? { error: { code: err.code, what: err.what, where: err.where, fix: err.fix } }
          : { error: { code: "INTERNAL", what: err instanceof Error ? err.message : String(err) } };
    process.stdout.write(JSON.stringify(body) + "\n");
  } else if (err instanceof ProblemsError) {
    for (const p of err.problems) process.stderr.write(`${formatLocatedProblem(p)}\n`);
    process.stderr.write(
      `error: ${err.problems.length} problem${err.problems.length === 1 ? "" : "s"} found\n`,
    );
  } else if (err instanceof LabError) {
    process.stderr.write(`error: ${err.message}\n`);
  } else {
    const msg = err instanceof Error ? err.message : String(err);
    process.stderr.write(`error: internal: ${msg} (this is a bug in lab; rerun with --debug for details)\n`);
  }
  if (opts.debug && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  return code;
}
