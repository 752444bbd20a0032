/**
 * Reads a topology file: YAML → zod → cross-field checks, collecting every problem with its
 * file:line:column before reporting, so `lab validate` shows them all at once.
 */
import { existsSync } from "node:fs";
import { isMap, isSeq, LineCounter, parseDocument, type Document } from "yaml";
import type { z } from "zod";
import { LabError, ProblemsError, readUserFile, type Problem } from "./errors.ts";
import { LabFile, type Lab } from "./schema.ts";
import { crossFieldProblems } from "./validate.ts";
import { DEFAULT_LAB_YAML } from "./default-lab.ts";

export interface LoadedLab {
  lab: Lab;
  /** Where it came from: a path, or `(built-in default)`. */
  source: string;
}

export interface TopologyResult {
  lab?: Lab;
  problems: Problem[];
}

/** Parses and checks topology text; never throws for bad input. */
export function checkTopology(text: string, file = "lab.yaml"): TopologyResult {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number | undefined) => {
    if (offset === undefined) return {};
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };
  if (doc.errors.length > 0) {
    return {
      problems: doc.errors.map((e) => ({
        file,
        path: "",
        message: `YAML syntax: ${e.message.split("\n")[0]}`,
        fix: "fix the YAML syntax (indentation, quotes, colons)",
        ...at(e.pos[0]),
      })),
    };
  }
  const value: unknown = doc.toJS();
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return {
      problems: [
        {
          file,
          path: "",
          message: "the file must be a mapping with apiVersion, kind, metadata and spec",
          fix: "start from `lab init` or examples/default.yaml",
          line: 1,
          column: 1,
        },
      ],
    };
  }
  const parsed = LabFile.safeParse(value);
  if (!parsed.success) {
    return {
      problems: parsed.error.issues
        .flatMap((issue) => issueToProblems(issue, doc))
        .map((p) => ({
          file,
          ...p,
          ...at(offsetOf(doc, p.rawPath)),
        }))
        .map(({ rawPath: _r, ...p }) => p),
    };
  }
  const problems = crossFieldProblems(parsed.data).map((p) => ({
    file,
    ...p,
    ...at(
      offsetOf(
        doc,
        p.path.split(".").map((s) => (/^\d+$/.test(s) ? Number(s) : s)),
      ),
    ),
  }));
  return problems.length > 0 ? { problems } : { lab: parsed.data, problems: [] };
}

type RawProblem = Problem & { rawPath: (string | number)[] };

function issueToProblems(issue: z.core.$ZodIssue, doc: Document): RawProblem[] {
  const path = issue.path.map((p) => (typeof p === "symbol" ? String(p) : p));
  const fix = (issue as { params?: { fix?: string } }).params?.fix;
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => {
      const known = knownKeys(doc, path);
      const guess = closest(key, known);
      return {
        path: joinPath([...path, key]),
        rawPath: [...path, key],
        message: `unknown field "${key}"`,
        fix: guess
          ? `did you mean "${guess}"?`
          : known.length
            ? `allowed here: ${known.join(", ")}`
            : "remove it",
      };
    });
  }
  let message = issue.message;
  const got = describe(valueAt(doc.toJS(), path));
  if (issue.code === "invalid_type") {
    message =
      got === "nothing"
        ? `is required (expected ${issue.expected})`
        : `must be ${article(issue.expected)} (got ${got})`;
  } else if (issue.code === "invalid_value") {
    const values = issue.values.map((v) => JSON.stringify(v));
    message = `must be ${values.length === 1 ? values[0] : `one of ${values.join(", ")}`} (got ${got})`;
  } else if (issue.code === "too_small" || issue.code === "too_big") {
    const bound = issue.code === "too_small" ? issue.minimum : issue.maximum;
    const word = issue.code === "too_small" ? "at least" : "at most";
    const unit = issue.origin === "array" ? " items" : issue.origin === "string" ? " characters" : "";
    const exact = issue.inclusive === false ? (issue.code === "too_small" ? "more than" : "less than") : word;
    message = `must be ${exact} ${String(bound)}${unit} (got ${got})`;
  }
  return [{ path: joinPath(path), rawPath: path, message, ...(fix ? { fix } : {}) }];
}

// The allowed keys are not in the issue; the schema's shape at that path knows them.
function knownKeys(_doc: Document, path: (string | number)[]): string[] {
  let schema: unknown = LabFile;
  for (const seg of path) {
    schema = unwrap(schema);
    const s = schema as { shape?: Record<string, unknown>; element?: unknown; options?: unknown[] };
    if (typeof seg === "number" && s.element) schema = s.element;
    else if (s.shape && typeof seg === "string") schema = s.shape[seg];
    else return [];
  }
  const shape = (unwrap(schema) as { shape?: Record<string, unknown> }).shape;
  return shape ? Object.keys(shape) : [];
}

function unwrap(schema: unknown): unknown {
  let s = schema as { def?: { innerType?: unknown }; unwrap?: () => unknown };
  for (let i = 0; i < 5 && s?.def?.innerType; i++) s = s.def.innerType as typeof s;
  return s;
}

function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDist = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = levenshtein(word.toLowerCase(), c.toLowerCase());
    if (d < bestDist) [best, bestDist] = [c, d];
  }
  return best;
}

function levenshtein(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

function valueAt(root: unknown, path: (string | number)[]): unknown {
  let v = root;
  for (const seg of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<string | number, unknown>)[seg];
  }
  return v;
}

/** Source offset of the deepest existing node along `path` (a missing field points at its parent). */
function offsetOf(doc: Document, path: (string | number)[]): number | undefined {
  for (let n = path.length; n >= 0; n--) {
    const sub = path.slice(0, n);
    const node = (sub.length ? doc.getIn(sub, true) : doc.contents) as {
      range?: [number, number, number];
    } | null;
    if (node && node.range) {
      // For a key that exists, point at the key rather than its value.
      if (n > 0 && n === path.length) {
        const parent = (n > 1 ? doc.getIn(path.slice(0, n - 1), true) : doc.contents) as unknown;
        if (isMap(parent)) {
          const pair = parent.items.find((it) => (it.key as { value?: unknown })?.value === path[n - 1]);
          const keyRange = (pair?.key as { range?: [number, number, number] } | undefined)?.range;
          if (keyRange) return keyRange[0];
        }
        if (isSeq(parent)) return node.range[0];
      }
      return node.range[0];
    }
  }
  return undefined;
}

function joinPath(path: (string | number)[]): string {
  return path.map(String).join(".");
}

function article(expected: string): string {
  return /^[aeiou]/.test(expected) ? `an ${expected}` : `a ${expected}`;
}

function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return v.length === 0 ? "an empty list" : "a list";
  if (typeof v === "object") return "a mapping";
  return `${typeof v} ${JSON.stringify(v)}`;
}

/**
 * Finds the topology the user means: `-f FILE`, else `./lab.yaml`, else the built-in default.
 * Throws a ProblemsError listing every problem.
 */
export async function loadTopology(file?: string, cwd = process.cwd()): Promise<LoadedLab> {
  let path = file;
  if (!path && existsSync(`${cwd}/lab.yaml`)) path = `${cwd}/lab.yaml`;
  if (!path) {
    const r = checkTopology(DEFAULT_LAB_YAML, "(built-in default)");
    if (!r.lab) throw new ProblemsError(r.problems, "the built-in default topology is invalid (a bug)");
    return { lab: r.lab, source: "(built-in default)" };
  }
  const text = await readUserFile(
    path,
    (code) =>
      new LabError({
        code: "TOPOLOGY_UNREADABLE",
        what: `cannot read topology file ${path}: ${code}`,
        fix: "check the path given with -f, or run without -f to use ./lab.yaml or the built-in default",
      }),
  );
  const display = path.startsWith(cwd + "/") ? path.slice(cwd.length + 1) : path;
  const r = checkTopology(text, display);
  if (!r.lab) throw new ProblemsError(r.problems, `${display} is invalid`);
  return { lab: r.lab, source: display };
}
