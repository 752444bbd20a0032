/**
 * Upstream's OpenAPI definitions (k8s-definitions.json, from definitions-gen.ts) and the lookups
 * on them that the OpenAPI documents, `kubectl explain`, field validation and server-side apply
 * share. Read once per process, on first use.
 */
import { readFileSync } from "node:fs";
import type { ResourceInfo } from "../../api/resources.ts";

export type Schema = Record<string, unknown>;

let cached: Record<string, Schema> | undefined;

export function definitions(): Record<string, Schema> {
  cached ??= JSON.parse(readFileSync(new URL("./k8s-definitions.json", import.meta.url), "utf8")) as Record<
    string,
    Schema
  >;
  return cached;
}

export const REF_PREFIX = "#/definitions/";

interface Gvk {
  group: string;
  version: string;
  kind: string;
}

let byGvk: Map<string, string> | undefined;

/** The definition name of a kind (io.k8s.api.apps.v1.Deployment), undefined for a kind upstream lacks. */
export function definitionName(info: Pick<ResourceInfo, "group" | "version" | "kind">): string | undefined {
  if (!byGvk) {
    byGvk = new Map();
    for (const [name, d] of Object.entries(definitions())) {
      for (const g of (d["x-kubernetes-group-version-kind"] as Gvk[] | undefined) ?? [])
        if (!byGvk.has(`${g.group}/${g.version}/${g.kind}`))
          byGvk.set(`${g.group}/${g.version}/${g.kind}`, name);
    }
  }
  return byGvk.get(`${info.group}/${info.version}/${info.kind}`);
}

/** The schema a `$ref` points at, else the schema itself. */
export function deref(s: Schema): Schema {
  const ref = s.$ref;
  if (typeof ref === "string" && ref.startsWith(REF_PREFIX))
    return definitions()[ref.slice(REF_PREFIX.length)] ?? {};
  return s;
}

/** Every definition a schema reaches through `$ref`, itself included when named. */
export function reachable(names: string[]): Set<string> {
  const defs = definitions();
  const seen = new Set<string>();
  const todo = [...names];
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) for (const x of v) visit(x);
    else if (typeof v === "object" && v !== null) {
      for (const [k, x] of Object.entries(v)) {
        if (k === "$ref" && typeof x === "string" && x.startsWith(REF_PREFIX))
          todo.push(x.slice(REF_PREFIX.length));
        else visit(x);
      }
    }
  };
  while (todo.length) {
    const n = todo.pop()!;
    if (seen.has(n) || !defs[n]) continue;
    seen.add(n);
    visit(defs[n]);
  }
  return seen;
}
