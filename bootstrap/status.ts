/**
 * Cluster status for `lab status`: etcd members with health and leader, asked over SSH on the
 * masters (etcdctl with the master's own etcd certificate), so it needs no route from the lab host;
 * and node readiness from the API, reached through the lab dialer (the hypervisor's jump, if any).
 */
import type { V1NodeList } from "@kubernetes/client-node";
import { LabError } from "../topology/errors.ts";
import { labDialer } from "../ssh/dialer.ts";
import { apiEndpoint } from "./kubeconfig.ts";
import { adminGet, nodesReadiness } from "./steps/wait-ready.ts";
import type { Machine } from "../provisioners/provisioner.ts";
import { clientURL, type EtcdMember } from "../templates/etcd.ts";
import { HOST_PATHS } from "../templates/paths.ts";
import type { Plan } from "../topology/plan.ts";
import {
  etcdctlHealthArgs,
  etcdctlStatusArgs,
  etcdMembers,
  parseEndpointHealth,
  parseEndpointStatus,
  type EtcdStatusRow,
  type MemberHealth,
} from "./etcd.ts";
import { SshSession, shq } from "../ssh/session.ts";

export interface EtcdMemberStatus {
  name: string;
  endpoint: string;
  healthy: boolean;
  leader: boolean;
  error?: string;
}

/** Joins etcdctl's health and status answers to the planned members. Pure. */
export function etcdMemberRows(
  members: EtcdMember[],
  health: MemberHealth[],
  status: EtcdStatusRow[],
): EtcdMemberStatus[] {
  const leaderId = status.find((s) => s.leader)?.leader;
  return members.map((m) => {
    const url = clientURL(m);
    const h = health.find((r) => r.endpoint === url);
    const s = status.find((r) => r.endpoint === url);
    return {
      name: m.name,
      endpoint: url,
      healthy: h?.health === true,
      leader: !!s && s.memberId === leaderId,
      ...(h?.health ? {} : { error: h?.error?.split("\n")[0] ?? "no answer" }),
    };
  });
}

/** Asks the first master that answers; every member is reported, unreachable ones as unhealthy. */
export async function etcdClusterStatus(
  plan: Plan,
  machines: Machine[],
  signal?: AbortSignal,
): Promise<EtcdMemberStatus[]> {
  const members = etcdMembers(plan);
  const pki = `${HOST_PATHS.pki}/etcd`;
  const tls = { ca: `${pki}/ca.crt`, cert: `${pki}/server.crt`, key: `${pki}/server.key` };
  const endpoints = members.map(clientURL);
  for (const m of plan.masters) {
    const machine = machines.find((x) => x.name === m.name);
    if (!machine) continue;
    let s: SshSession | undefined;
    try {
      s = await SshSession.connect(machine, { signal, timeoutMs: 10_000 });
      const run = async (args: string[]) =>
        (await s!.sudo(`ETCDCTL_API=3 etcdctl ${args.map(shq).join(" ")}`, { timeoutMs: 20_000, signal }))
          .stdout;
      const health = parseEndpointHealth(await run(etcdctlHealthArgs(endpoints, tls)));
      const status = parseEndpointStatus(await run(etcdctlStatusArgs(endpoints, tls)));
      if (health.length) return etcdMemberRows(members, health, status);
    } catch {
      // try the next master
    } finally {
      s?.close();
    }
  }
  return etcdMemberRows(members, [], []);
}

export interface ApiStatus {
  endpoint: string;
  /** The jump host the lab host reached the API through (`user@host:port`), when behind one. */
  via?: string;
  /** Nodes the API reports Ready, of the planned ones; absent when the API did not answer. */
  nodes?: { ready: string[]; notReady: { name: string; why: string }[] };
  error?: string;
}

/** Asks the API (the VIP, through the lab dialer) which nodes are Ready; never throws. */
export async function apiStatus(
  plan: Plan,
  machines: Machine[],
  tls: { ca: string; cert: string; key: string },
): Promise<ApiStatus> {
  const endpoint = apiEndpoint(plan);
  const dialer = labDialer(machines);
  const via = dialer.via(plan.network.vip);
  const out: ApiStatus = { endpoint, ...(via ? { via: `${via.user}@${via.host}:${via.port}` } : {}) };
  try {
    const r = await adminGet(tls, `${endpoint}/api/v1/nodes`, 10_000, dialer);
    if (r.status !== 200) return { ...out, error: `answered ${r.status}` };
    return { ...out, nodes: nodesReadiness(plan, JSON.parse(r.body) as V1NodeList) };
  } catch (err) {
    return { ...out, error: err instanceof LabError ? err.what : (err as Error).message };
  } finally {
    await dialer.close();
  }
}
