/**
 * Regenerates api/validation/k8s-types.json from the OpenAPI-derived models that
 * @kubernetes/client-node ships: for each model reachable from a served kind, its JSON field names
 * and types. `npx tsx api/validation/k8s-types-gen.ts` rewrites the file; a unit test checks it
 * is in step with the installed client-node.
 */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { KIND_MODELS } from "./kind-models.ts";

interface Attribute {
  baseName: string;
  type: string;
  format: string;
}
type Model = { getAttributeTypeMap(): Attribute[] };

// V1MicroTime is a timestamp string with microseconds; the generator has no class for it.
const PRIMITIVE = new Set([
  "string",
  "number",
  "boolean",
  "Date",
  "V1MicroTime",
  "any",
  "object",
  "IntOrString",
]);

function referenced(type: string): string[] {
  const inner = type.replace(/^Array<(.*)>$/, "$1").replace(/^\{ \[key: string\]: (.*); \}$/, "$1");
  if (inner !== type) return referenced(inner);
  return PRIMITIVE.has(type) ? [] : [type];
}

/** Field name to type ("number:int32" keeps the integer formats) for every reachable model. */
export async function generate(): Promise<Record<string, Record<string, string>>> {
  const models = (await import("@kubernetes/client-node")) as unknown as Record<string, Model | undefined>;
  const out: Record<string, Record<string, string>> = {};
  const todo = Object.values(KIND_MODELS);
  while (todo.length) {
    const name = todo.pop()!;
    if (out[name]) continue;
    const model = models[name];
    if (typeof model?.getAttributeTypeMap !== "function")
      throw new Error(`@kubernetes/client-node has no model ${name}`);
    const fields: Record<string, string> = {};
    for (const a of model.getAttributeTypeMap()) {
      fields[a.baseName] = a.type === "number" && a.format.startsWith("int") ? `number:${a.format}` : a.type;
      todo.push(...referenced(a.type));
    }
    out[name] = fields;
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const target = fileURLToPath(new URL("./k8s-types.json", import.meta.url));
  writeFileSync(target, JSON.stringify(await generate(), null, 2) + "\n");
  console.log(`wrote ${target}`);
}
