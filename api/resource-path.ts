/** URL paths of the API: a resource's collection, object and subresource, and query strings. */
import { RESOURCES, type ResourceInfo } from "./resources.ts";

function info(plural: string): ResourceInfo {
  const r = RESOURCES.find((x) => x.plural === plural);
  if (!r) throw new Error(`unknown resource "${plural}"`);
  return r;
}

export function resourcePath(
  plural: string,
  namespace?: string,
  name?: string,
  subresource?: string,
): string {
  const r = info(plural);
  let p = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  if (r.namespaced && namespace) p += `/namespaces/${encodeURIComponent(namespace)}`;
  p += `/${r.plural}`;
  if (name) p += `/${encodeURIComponent(name)}`;
  if (subresource) p += `/${subresource}`;
  return p;
}

export function query(params: Record<string, string | number | boolean | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}
