/**
 * Cluster status for `lab status`: etcd members with health and leader, asked over SSH on the
 * masters (etcdctl with the master's own etcd certificate), so it needs no route from the lab host.
 */
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
import { SshSession, shq } from "./ssh.ts";

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
