import { findResource, type ResourceInfo } from "../../api/resources.ts";
import { ApiError, badRequest } from "../../api/status.ts";

/** A resource path taken apart: /api/v1/namespaces/NS/pods/NAME/status. */
export interface Route {
  info: ResourceInfo;
  namespace?: string;
  name?: string;
  subresource?: string;
}

export type Verb = "get" | "list" | "watch" | "create" | "update" | "patch" | "delete" | "deletecollection";

/** Subresources lab-server serves at all (each still needs the kind to have it). */
export const SUBRESOURCES = [
  "status",
  "scale",
  "binding",
  "log",
  "exec",
  "attach",
  "portforward",
  "finalize",
  "eviction",
  "token",
];

/** The request URL, parsed; a URL Node cannot parse is the client's error, not a 500. */
export function requestUrl(raw: string | undefined): URL {
  try {
    return new URL(raw ?? "/", "https://localhost");
  } catch {
    throw badRequest(`the request URL ${JSON.stringify((raw ?? "").slice(0, 200))} cannot be parsed`);
  }
}

/** The path without trailing slashes ("/" stays "/"). */
export function cleanPath(pathname: string): string {
  return pathname.replace(/\/+$/, "") || "/";
}

function decodeSegment(seg: string): string {
  try {
    return decodeURIComponent(seg);
  } catch {
    throw badRequest(`the path segment "${seg.slice(0, 200)}" is not valid percent-encoded UTF-8`);
  }
}

/** Parses /api/v1/... and /apis/G/V/... resource paths; undefined when no served resource matches. */
export function parseResourcePath(path: string): Route | undefined {
  const segs = path
    .split("/")
    .filter((s) => s !== "")
    .map(decodeSegment);
  let group: string;
  let version: string;
  let rest: string[];
  if (segs[0] === "api" && segs.length >= 3) {
    group = "";
    version = segs[1]!;
    rest = segs.slice(2);
  } else if (segs[0] === "apis" && segs.length >= 4) {
    group = segs[1]!;
    version = segs[2]!;
    rest = segs.slice(3);
  } else return undefined;
  let namespace: string | undefined;
  if (rest[0] === "namespaces" && rest.length >= 3 && findResource(group, version, rest[2]!)?.namespaced) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const info = findResource(group, version, rest[0]!);
  if (!info || rest.length > 3) return undefined;
  if (info.namespaced !== (namespace !== undefined) && rest.length > 1) return undefined;
  const route: Route = { info };
  if (namespace !== undefined) route.namespace = namespace;
  if (rest[1] !== undefined) route.name = rest[1];
  if (rest[2] !== undefined) route.subresource = rest[2];
  return route;
}

/** The Kubernetes verb of a request (GET on a collection is list, or watch with ?watch). */
export function verbOf(method: string, r: Route, q: URLSearchParams): Verb {
  // Go's strconv.ParseBool, as upstream reads it (the Python client sends watch=True).
  const watch = ["1", "t", "T", "true", "TRUE", "True"].includes(q.get("watch") ?? "");
  switch (method) {
    case "GET":
      return r.name ? "get" : watch ? "watch" : "list";
    case "POST":
      return "create";
    case "PUT":
      return "update";
    case "PATCH":
      return "patch";
    case "DELETE":
      return r.name ? "delete" : "deletecollection";
    default:
      throw new ApiError(405, "MethodNotAllowed", `method ${method} is not supported`);
  }
}
