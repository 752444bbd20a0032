/** The files each machine gets, read from the lab state; shared by the etcd, control-plane, vip and join steps. */
import { readFile } from "node:fs/promises";
import type { LabState } from "../../topology/state.ts";
import { HOST_PATHS } from "../../templates/paths.ts";
import type { RemoteFile } from "./context.ts";

const pki = HOST_PATHS.pki;

async function pair(state: LabState, id: string) {
  return {
    cert: await readFile(state.path("pki", `${id}.crt`), "utf8"),
    key: await readFile(state.path("pki", `${id}.key`), "utf8"),
  };
}

export async function etcdFiles(state: LabState, master: string): Promise<RemoteFile[]> {
  const own = { owner: "etcd:etcd" };
  const peer = await pair(state, `etcd/${master}-peer`);
  const server = await pair(state, `etcd/${master}-server`);
  const ca = await readFile(state.path("pki", "etcd/ca.crt"), "utf8");
  return [
    { path: `${pki}/etcd/ca.crt`, data: ca, mode: 0o644, ...own },
    { path: `${pki}/etcd/peer.crt`, data: peer.cert, mode: 0o644, ...own },
    { path: `${pki}/etcd/peer.key`, data: peer.key, mode: 0o600, ...own },
    { path: `${pki}/etcd/server.crt`, data: server.cert, mode: 0o644, ...own },
    { path: `${pki}/etcd/server.key`, data: server.key, mode: 0o600, ...own },
  ];
}

export async function apiServerFiles(state: LabState): Promise<RemoteFile[]> {
  const serving = await pair(state, "apiserver");
  const etcdClient = await pair(state, "apiserver-etcd-client");
  return [
    { path: `${pki}/ca.crt`, data: await readFile(state.path("pki", "ca.crt"), "utf8") },
    { path: `${pki}/apiserver.crt`, data: serving.cert },
    { path: `${pki}/apiserver.key`, data: serving.key, mode: 0o600 },
    { path: `${pki}/apiserver-etcd-client.crt`, data: etcdClient.cert },
    { path: `${pki}/apiserver-etcd-client.key`, data: etcdClient.key, mode: 0o600 },
  ];
}

/** The node's API identity (CN=system:node:NAME), used by lab-agent and by the VIP health check. */
export async function nodeIdentityFiles(state: LabState, node: string): Promise<RemoteFile[]> {
  const id = await pair(state, `nodes/${node}`);
  return [
    { path: `${pki}/ca.crt`, data: await readFile(state.path("pki", "ca.crt"), "utf8") },
    { path: `${pki}/node.crt`, data: id.cert },
    { path: `${pki}/node.key`, data: id.key, mode: 0o600 },
  ];
}
