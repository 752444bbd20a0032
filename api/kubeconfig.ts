/** Reads the server and credentials of a kubeconfig's current context. */
import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import type { ClientConfig } from "./client-types.ts";

/** The server, CA and client certificate of a kubeconfig's current context. */
export async function readKubeconfig(path: string): Promise<ClientConfig> {
  const kc = parseYaml(await readFile(path, "utf8")) as {
    "current-context"?: string;
    contexts?: { name: string; context: { cluster: string; user: string } }[];
    clusters?: { name: string; cluster: Record<string, string> }[];
    users?: { name: string; user: Record<string, string> }[];
  };
  const ctx = kc.contexts?.find((c) => c.name === kc["current-context"]) ?? kc.contexts?.[0];
  const cluster = kc.clusters?.find((c) => c.name === ctx?.context.cluster)?.cluster;
  const user = kc.users?.find((u) => u.name === ctx?.context.user)?.user;
  if (!cluster || !user) throw new Error(`kubeconfig ${path} has no usable context`);
  const load = async (data: string | undefined, file: string | undefined): Promise<Buffer> => {
    if (data) return Buffer.from(data, "base64");
    if (file) return readFile(file);
    throw new Error(`kubeconfig ${path} lacks a certificate or key`);
  };
  return {
    server: cluster.server!,
    ca: await load(cluster["certificate-authority-data"], cluster["certificate-authority"]),
    cert: await load(user["client-certificate-data"], user["client-certificate"]),
    key: await load(user["client-key-data"], user["client-key"]),
  };
}
