/** Kubeconfig documents (pure): the admin's for `lab kubeconfig`, a node's for lab-agent. */
import { parse, stringify } from "yaml";

export interface KubeconfigInput {
  cluster: string;
  user: string;
  server: string;
  /** PEM, embedded as base64 data, or file paths on the machine that reads it. */
  ca: { pem: string } | { file: string };
  cert: { pem: string } | { file: string };
  key: { pem: string } | { file: string };
}

const b64 = (s: string) => Buffer.from(s).toString("base64");

export function renderKubeconfig(k: KubeconfigInput): string {
  const context = `${k.user}@${k.cluster}`;
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: k.cluster,
        cluster: {
          server: k.server,
          ...("pem" in k.ca
            ? { "certificate-authority-data": b64(k.ca.pem) }
            : { "certificate-authority": k.ca.file }),
        },
      },
    ],
    users: [
      {
        name: `${k.user}@${k.cluster}`,
        user: {
          ...("pem" in k.cert
            ? { "client-certificate-data": b64(k.cert.pem) }
            : { "client-certificate": k.cert.file }),
          ...("pem" in k.key ? { "client-key-data": b64(k.key.pem) } : { "client-key": k.key.file }),
        },
      },
    ],
    contexts: [{ name: context, context: { cluster: k.cluster, user: `${k.user}@${k.cluster}` } }],
    "current-context": context,
    preferences: {},
  });
}

/** Written to the lab state by the bootstrap: where the lab's API answers. */
export interface LabEndpoint {
  lab: string;
  server: string;
}

/** The API endpoint of a lab: the VIP (or the single master) on the apiserver port. */
export function apiEndpoint(plan: { network: { vip: string }; cluster: { apiServerPort: number } }): string {
  return `https://${plan.network.vip}:${plan.cluster.apiServerPort}`;
}

interface Named {
  name: string;
}
interface KubeconfigDoc {
  clusters?: Named[];
  users?: Named[];
  contexts?: Named[];
  "current-context"?: string;
  [k: string]: unknown;
}

/**
 * Merges `ours` into an existing kubeconfig (like kind): entries with the same names are replaced,
 * everything else is kept, and the current context becomes ours.
 */
export function mergeKubeconfig(existing: string, ours: string): string {
  const base = (existing.trim() ? (parse(existing) as KubeconfigDoc) : null) ?? {
    apiVersion: "v1",
    kind: "Config",
  };
  const add = parse(ours) as KubeconfigDoc;
  for (const key of ["clusters", "users", "contexts"] as const) {
    const incoming = add[key] ?? [];
    const names = new Set(incoming.map((e) => e.name));
    base[key] = [...(base[key] ?? []).filter((e) => !names.has(e.name)), ...incoming];
  }
  base["current-context"] = add["current-context"];
  return stringify(base);
}
