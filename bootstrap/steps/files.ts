/** The files each machine gets, read from the lab state; shared by the etcd, control-plane, vip and join steps. */
import { readFile } from "node:fs/promises";
import type { LabState } from "../../topology/state.ts";
import { HOST_PATHS } from "../../templates/paths.ts";
import { labServerHostFiles } from "../../templates/lab-server.ts";
import { renderKubeconfig } from "../kubeconfig.ts";
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
  const kubeletClient = await pair(state, "apiserver-kubelet-client");
  return [
    { path: `${pki}/ca.crt`, data: await readFile(state.path("pki", "ca.crt"), "utf8") },
    { path: `${pki}/apiserver.crt`, data: serving.cert },
    { path: `${pki}/apiserver.key`, data: serving.key, mode: 0o600 },
    { path: `${pki}/apiserver-etcd-client.crt`, data: etcdClient.cert },
    { path: `${pki}/apiserver-etcd-client.key`, data: etcdClient.key, mode: 0o600 },
    { path: `${pki}/apiserver-kubelet-client.crt`, data: kubeletClient.cert },
    { path: `${pki}/apiserver-kubelet-client.key`, data: kubeletClient.key, mode: 0o600 },
  ];
}

/**
 * The identity of the scheduler and controllers inside lab-server, with a kubeconfig that points
 * at the local apiserver (its serving certificate has 127.0.0.1 among its SANs).
 */
export async function controllerManagerFiles(state: LabState, port: number): Promise<RemoteFile[]> {
  const f = labServerHostFiles();
  const id = await pair(state, "controller-manager");
  const kubeconfig = renderKubeconfig({
    cluster: state.name,
    user: "system:lab-controller-manager",
    server: `https://127.0.0.1:${port}`,
    ca: { file: f.clientCA },
    cert: { file: f.loopsCert },
    key: { file: f.loopsKey },
  });
  return [
    { path: f.loopsCert, data: id.cert },
    { path: f.loopsKey, data: id.key, mode: 0o600 },
    { path: f.loopsKubeconfig, data: kubeconfig, mode: 0o600 },
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

/** lab-agent's serving certificate for its logs/exec port (SANs: the node's name and address). */
export async function agentServingFiles(state: LabState, node: string): Promise<RemoteFile[]> {
  const serving = await pair(state, `nodes/${node}-serving`);
  return [
    { path: `${pki}/node-serving.crt`, data: serving.cert },
    { path: `${pki}/node-serving.key`, data: serving.key, mode: 0o600 },
  ];
}
