/**
 * Regenerates controlplane/openapi/k8s-definitions.json, the upstream Kubernetes schema lab-server
 * serves in /openapi/v2 and /openapi/v3 and server-side apply reads its list types from.
 *
 *   npx tsx controlplane/openapi/definitions-gen.ts PATH/TO/swagger.json
 *
 * The input is upstream's api/openapi-spec/swagger.json of the Kubernetes minor lab-server speaks
 * (v1.32; the Python client ships the same file as kubernetes/swagger.json.unprocessed, tag
 * v32.0.1). Kept: the definitions reachable from every kind of a stable group-version (vN), so a
 * kind added to RESOURCES finds its schema here; dropped: alpha/beta versions and *List kinds.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

type Schema = Record<string, unknown>;

const PREFIX = "#/definitions/";

function refs(v: unknown, out: Set<string>): void {
  if (Array.isArray(v)) for (const x of v) refs(x, out);
  else if (typeof v === "object" && v !== null) {
    for (const [k, x] of Object.entries(v)) {
      if (k === "$ref" && typeof x === "string" && x.startsWith(PREFIX)) out.add(x.slice(PREFIX.length));
      else refs(x, out);
    }
  }
}

export function trim(definitions: Record<string, Schema>): Record<string, Schema> {
  const roots = Object.entries(definitions).filter(([name, d]) => {
    const gvks = d["x-kubernetes-group-version-kind"] as { version: string; kind: string }[] | undefined;
    return gvks?.some((g) => /^v\d+$/.test(g.version) && !g.kind.endsWith("List")) && !name.endsWith("List");
  });
  const keep = new Set<string>();
  const todo = roots.map(([n]) => n);
  while (todo.length) {
    const n = todo.pop()!;
    if (keep.has(n) || !definitions[n]) continue;
    keep.add(n);
    const found = new Set<string>();
    refs(definitions[n], found);
    todo.push(...found);
  }
  return Object.fromEntries([...keep].sort().map((n) => [n, definitions[n]!]));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const input = process.argv[2];
  if (!input) {
    console.error("usage: npx tsx controlplane/openapi/definitions-gen.ts PATH/TO/swagger.json");
    process.exit(2);
  }
  const doc = JSON.parse(readFileSync(input, "utf8")) as { definitions?: Record<string, Schema> };
  if (!doc.definitions) {
    console.error(`${input} has no "definitions": not a Swagger 2.0 document`);
    process.exit(1);
  }
  const out = fileURLToPath(new URL("./k8s-definitions.json", import.meta.url));
  const trimmed = trim(doc.definitions);
  writeFileSync(out, JSON.stringify(trimmed) + "\n");
  console.log(`${out}: ${Object.keys(trimmed).length} definitions`);
}
