/**
 * Errors as values: what went wrong, where (a field path, a node, a file position) and how to fix it.
 * The CLI prints one line per error and picks the exit code from `source`; stack traces only with --debug.
 */
import { readFile } from "node:fs/promises";

export type ErrorSource = "user" | "host" | "internal";

export interface LabErrorInit {
  code: string;
  what: string;
  where?: string;
  fix?: string;
  source?: ErrorSource;
  cause?: unknown;
}

export class LabError extends Error {
  readonly code: string;
  readonly what: string;
  readonly where: string | undefined;
  readonly fix: string | undefined;
  readonly source: ErrorSource;

  constructor(init: LabErrorInit) {
    super(formatProblem(init), init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "LabError";
    this.code = init.code;
    this.what = init.what;
    this.where = init.where;
    this.fix = init.fix;
    this.source = init.source ?? "user";
  }
}

/** One located problem in an input file; `lab validate` reports all of them at once. */
export interface Problem {
  /** Dotted field path, e.g. `spec.masters.count`. */
  path: string;
  message: string;
  fix?: string;
  file?: string;
  line?: number;
  column?: number;
}

/** Several problems found in one input; thrown only after every check has run. */
export class ProblemsError extends LabError {
  readonly problems: Problem[];
  constructor(problems: Problem[], what = "the topology is invalid") {
    super({
      code: "INVALID_TOPOLOGY",
      what: `${what}:\n${problems.map((p) => "  " + formatLocatedProblem(p)).join("\n")}`,
      source: "user",
    });
    this.problems = problems;
  }
}

export function formatProblem(p: { what: string; where?: string; fix?: string }): string {
  const head = p.where ? `${p.where}: ${p.what}` : p.what;
  return p.fix ? `${head} (fix: ${p.fix})` : head;
}

/** `lab.yaml:12:7 spec.masters.count: must be 1, 3 or 5 (got 2): why/fix` */
export function formatLocatedProblem(p: Problem): string {
  const pos = p.file ? `${p.file}${p.line ? `:${p.line}:${p.column ?? 1}` : ""} ` : "";
  return `${pos}${p.path || "(file)"}: ${p.message}${p.fix ? `: ${p.fix}` : ""}`;
}

/** The text of a file the user named; when it cannot be read, `unreadable(code)` says which and what to do. */
export async function readUserFile(path: string, unreadable: (code: string) => LabError): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    throw unreadable((err as NodeJS.ErrnoException).code ?? String(err));
  }
}
