import { groupVersion, RESOURCES, type ResourceInfo } from "../api/resources.ts";
import { METRICS_GROUP, METRICS_VERSION, metricsResourceList } from "./metrics/serve.ts";
import { AUTHENTICATION_GROUP, AUTHORIZATION_GROUP, reviewResourceList } from "./server/reviews.ts";

/** Discovery documents kubectl reads before anything else (/api, /apis, /api/v1, /apis/G/V). */

export const SERVER_VERSION = {
  major: "1",
  minor: "32",
  gitVersion: "v1.32.0-lab",
  gitCommit: "lab",
  gitTreeState: "clean",
  buildDate: "2026-01-01T00:00:00Z",
  goVersion: "node" + process.versions.node,
  compiler: "tsx",
  platform: `${process.platform}/${process.arch === "x64" ? "amd64" : process.arch}`,
};

const READ = ["get", "list", "watch"];
const ALL = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

function resourceList(group: string, version: string): Record<string, unknown> {
  const infos = RESOURCES.filter((r) => r.group === group && r.version === version);
  const resources: Record<string, unknown>[] = [];
  for (const r of infos) {
    const entry: Record<string, unknown> = {
      name: r.plural,
      singularName: r.singular,
      namespaced: r.namespaced,
      kind: r.kind,
      verbs: ALL,
    };
    if (r.shortNames.length) entry.shortNames = r.shortNames;
    if (r.inAll) entry.categories = ["all"];
    resources.push(entry);
    if (r.status)
      resources.push({
        name: `${r.plural}/status`,
        singularName: "",
        namespaced: r.namespaced,
        kind: r.kind,
        verbs: ["get", "patch", "update"],
      });
    if (r.scale) {
      resources.push({
        name: `${r.plural}/scale`,
        singularName: "",
        namespaced: true,
        group: "autoscaling",
        version: "v1",
        kind: "Scale",
        verbs: ["get", "patch", "update"],
      });
    }
    if (r.kind === "Pod") {
      resources.push({
        name: "pods/binding",
        singularName: "",
        namespaced: true,
        kind: "Binding",
        verbs: ["create"],
      });
      resources.push({ name: "pods/log", singularName: "", namespaced: true, kind: "Pod", verbs: ["get"] });
      resources.push({
        name: "pods/eviction",
        singularName: "",
        namespaced: true,
        group: "policy",
        version: "v1",
        kind: "Eviction",
        verbs: ["create"],
      });
      resources.push({
        name: "pods/exec",
        singularName: "",
        namespaced: true,
        kind: "PodExecOptions",
        verbs: ["create", "get"],
      });
    }
    if (r.kind === "ServiceAccount")
      resources.push({
        name: "serviceaccounts/token",
        singularName: "",
        namespaced: true,
        group: "authentication.k8s.io",
        version: "v1",
        kind: "TokenRequest",
        verbs: ["create"],
      });
    if (r.kind === "Namespace")
      resources.push({
        name: "namespaces/finalize",
        singularName: "",
        namespaced: false,
        kind: "Namespace",
        verbs: ["update"],
      });
  }
  void READ;
  return {
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: group ? `${group}/${version}` : version,
    resources,
  };
}

export function groups(): { name: string; versions: string[] }[] {
  const names = [...new Set(RESOURCES.filter((r) => r.group !== "").map((r) => r.group))];
  return [
    ...names.map((name) => ({
      name,
      versions: [...new Set(RESOURCES.filter((r) => r.group === name).map((r) => r.version))],
    })),
    // served from the nodes on request, not stored (metrics/serve.ts)
    { name: METRICS_GROUP, versions: [METRICS_VERSION] },
    // access reviews, answered by the authorizer and never stored (server/reviews.ts)
    { name: AUTHORIZATION_GROUP, versions: ["v1"] },
    { name: AUTHENTICATION_GROUP, versions: ["v1"] },
  ];
}

function apiGroup(g: { name: string; versions: string[] }): Record<string, unknown> {
  const versions = g.versions.map((v) => ({ groupVersion: `${g.name}/${v}`, version: v }));
  return { kind: "APIGroup", apiVersion: "v1", name: g.name, versions, preferredVersion: versions[0] };
}

/** The discovery document for a path, or undefined when the path is not a discovery path. */
export function discovery(path: string, serverAddress: string): Record<string, unknown> | undefined {
  if (path === "/api") {
    return {
      kind: "APIVersions",
      versions: ["v1"],
      serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress }],
    };
  }
  if (path === "/api/v1") return resourceList("", "v1");
  if (path === "/apis") return { kind: "APIGroupList", apiVersion: "v1", groups: groups().map(apiGroup) };
  const m = /^\/apis\/([^/]+)(?:\/([^/]+))?$/.exec(path);
  if (!m) return undefined;
  const g = groups().find((x) => x.name === m[1]);
  if (!g) return undefined;
  if (!m[2]) return apiGroup(g);
  if (g.name === METRICS_GROUP) return m[2] === METRICS_VERSION ? metricsResourceList() : undefined;
  if (g.name === AUTHORIZATION_GROUP || g.name === AUTHENTICATION_GROUP)
    return m[2] === "v1" ? reviewResourceList(g.name) : undefined;
  return g.versions.includes(m[2]) ? resourceList(g.name, m[2]) : undefined;
}

export function apiVersionOf(info: ResourceInfo): string {
  return groupVersion(info);
}
