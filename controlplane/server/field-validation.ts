/**
 * The `fieldValidation` query parameter of writes (kube-apiserver's strict decoding): fields the
 * kind's schema does not declare, and fields a JSON body names twice, are an error (Strict, 400),
 * a Warning header each (Warn, the default) or nothing (Ignore).
 */
import type { ResourceInfo } from "../../api/resources.ts";
import { badRequest } from "../../api/status.ts";
import { definitionName, definitions, deref, type Schema } from "../openapi/definitions.ts";
import type { RequestContext } from "./context.ts";

export type FieldValidation = "Strict" | "Warn" | "Ignore";

export function fieldValidation(q: URLSearchParams): FieldValidation {
  const v = q.get("fieldValidation");
  if (v === null || v === "") return "Warn";
  if (v === "Strict" || v === "Warn" || v === "Ignore") return v;
  throw badRequest(
    `fieldValidation: Unsupported value: "${v}": supported values: "Ignore", "Strict", "Warn"`,
  );
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Paths (`spec.foo`, `spec.containers[0].bar`) of the fields the schema does not declare. */
export function unknownFields(info: ResourceInfo, obj: unknown): string[] {
  const name = definitionName(info);
  if (!name) return [];
  const out: string[] = [];
  walk(obj, definitions()[name], "", out);
  return out;
}

function walk(v: unknown, schema: Schema | undefined, path: string, out: string[]): void {
  if (!schema) return;
  const s = deref(schema);
  if (s["x-kubernetes-preserve-unknown-fields"] === true) return;
  if (isObject(v)) {
    const props = s.properties as Record<string, Schema> | undefined;
    const extra = s.additionalProperties;
    for (const [k, x] of Object.entries(v)) {
      if (k.startsWith("$")) continue; // a strategic merge patch's directives
      const p = path ? `${path}.${k}` : k;
      if (props?.[k]) walk(x, props[k], p, out);
      else if (isObject(extra)) walk(x, extra, p, out);
      else if (props) out.push(p);
    }
  } else if (Array.isArray(v) && isObject(s.items)) {
    v.forEach((x, i) => walk(x, s.items as Schema, `${path}[${i}]`, out));
  }
}

/** Paths of the keys a JSON text repeats within one object; [] for text that is not JSON. */
export function duplicateFields(text: string): string[] {
  const out: string[] = [];
  interface Frame {
    obj: boolean;
    keys: Set<string>;
    path: string;
    key?: string;
    index: number;
  }
  const stack: Frame[] = [];
  let expectKey = false;
  const childPath = (f: Frame | undefined): string => {
    if (!f) return "";
    if (f.obj) return f.path ? `${f.path}.${f.key}` : (f.key ?? "");
    return `${f.path}[${f.index}]`;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      let s = "";
      while (j < text.length && text[j] !== '"') {
        if (text[j] === "\\") {
          s += text.slice(j, j + 2);
          j += 2;
        } else s += text[j++];
      }
      const top = stack[stack.length - 1];
      if (top?.obj && expectKey) {
        let key = s;
        try {
          key = JSON.parse(`"${s}"`) as string;
        } catch {
          // keep it raw
        }
        if (top.keys.has(key)) out.push(top.path ? `${top.path}.${key}` : key);
        top.keys.add(key);
        top.key = key;
        expectKey = false;
      }
      i = j;
    } else if (c === "{" || c === "[") {
      const parent = stack[stack.length - 1];
      stack.push({ obj: c === "{", keys: new Set(), path: childPath(parent), index: 0 });
      expectKey = c === "{";
    } else if (c === "}" || c === "]") {
      stack.pop();
      expectKey = false;
    } else if (c === ",") {
      const top = stack[stack.length - 1];
      if (top?.obj) expectKey = true;
      else if (top) top.index++;
    }
  }
  return out;
}

/** Applies the request's fieldValidation to a body: throws for Strict, sets Warning headers for Warn. */
export function validateFields(ctx: RequestContext, obj: unknown, rawJson?: string): void {
  const mode = fieldValidation(ctx.q);
  if (mode === "Ignore") return;
  const problems = [
    ...(rawJson !== undefined && /^\s*[{[]/.test(rawJson) ? duplicateFields(rawJson) : []).map(
      (p) => `duplicate field "${p}"`,
    ),
    ...unknownFields(ctx.route.info, obj).map((p) => `unknown field "${p}"`),
  ];
  if (problems.length === 0) return;
  if (mode === "Strict") throw badRequest(`strict decoding error: ${problems.join(", ")}`);
  const prior = ctx.reply.res.getHeader("Warning");
  const warnings = Array.isArray(prior) ? prior : prior === undefined ? [] : [String(prior)];
  ctx.reply.res.setHeader("Warning", [...warnings, ...problems.map((p) => `299 - ${JSON.stringify(p)}`)]);
}
