/**
 * etcd cluster formation, the pure part: which members, which flags, and how to read etcdctl's
 * health answer. The `etcd` step (steps/etcd.ts) runs these over SSH; the integration test runs the
 * very same flags as plain processes, so what is tested is what the masters run.
 */
import type { Plan, PlannedNode } from "../topology/plan.ts";
import { LabError } from "../topology/errors.ts";
import { waitUntilReady } from "../topology/readiness.ts";
import { clientURL, etcdHostFiles, type EtcdMember, type EtcdMemberConfig } from "../templates/etcd.ts";
import { HOST_PATHS } from "../templates/paths.ts";

export function etcdMembers(plan: Plan): EtcdMember[] {
  return plan.masters.map((m) => ({ name: m.name, address: m.address }));
}

export function etcdClusterToken(plan: Plan): string {
  return `lab-${plan.lab}-${plan.id}`;
}

/** The configuration of `master`'s member, with the certificate paths as they lie on the master. */
export function etcdMemberConfig(
  plan: Plan,
  master: PlannedNode,
  opts: { files?: EtcdMemberConfig["files"]; dataDir?: string; arch?: string; members?: EtcdMember[] } = {},
): EtcdMemberConfig {
  const cluster = opts.members ?? etcdMembers(plan);
  const member = cluster.find((m) => m.name === master.name);
  if (!member) throw new Error(`${master.name} is not an etcd member`);
  return {
    member,
    cluster,
    clusterToken: etcdClusterToken(plan),
    dataDir: opts.dataDir ?? HOST_PATHS.etcdData,
    files: opts.files ?? etcdHostFiles(),
    ...(opts.arch ? { arch: opts.arch } : {}),
  };
}

export interface EtcdctlTLS {
  ca: string;
  cert: string;
  key: string;
}

/** `etcdctl endpoint health --cluster`: asks any reachable endpoint for the members, then checks each. */
export function etcdctlHealthArgs(endpoints: string[], tls: EtcdctlTLS): string[] {
  return [
    `--endpoints=${endpoints.join(",")}`,
    `--cacert=${tls.ca}`,
    `--cert=${tls.cert}`,
    `--key=${tls.key}`,
    "--dial-timeout=3s",
    "--command-timeout=5s",
    "endpoint",
    "health",
    "--cluster",
    "-w",
    "json",
  ];
}

export function etcdctlStatusArgs(endpoints: string[], tls: EtcdctlTLS): string[] {
  return [...etcdctlHealthArgs(endpoints, tls).slice(0, 6), "endpoint", "status", "--cluster", "-w", "json"];
}

export interface MemberHealth {
  endpoint: string;
  health: boolean;
  error?: string;
}

/** Reads `etcdctl endpoint health -w json` (a JSON array; etcdctl exits 1 when any is unhealthy). */
export function parseEndpointHealth(stdout: string): MemberHealth[] {
  const start = stdout.indexOf("[");
  if (start < 0) return [];
  try {
    const rows = JSON.parse(stdout.slice(start)) as { endpoint: string; health: boolean; error?: string }[];
    return rows.map((r) => ({
      endpoint: r.endpoint,
      health: r.health === true,
      ...(r.error ? { error: r.error } : {}),
    }));
  } catch {
    return [];
  }
}

export interface EtcdStatusRow {
  endpoint: string;
  memberId: string;
  leader: string;
  dbSize: number;
}

export function parseEndpointStatus(stdout: string): EtcdStatusRow[] {
  const start = stdout.indexOf("[");
  if (start < 0) return [];
  const rows = JSON.parse(stdout.slice(start)) as {
    Endpoint: string;
    Status: { header: { member_id: number | string }; leader: number | string; dbSize: number };
  }[];
  return rows.map((r) => ({
    endpoint: r.Endpoint,
    memberId: BigInt(r.Status.header.member_id).toString(16),
    leader: BigInt(r.Status.leader).toString(16),
    dbSize: r.Status.dbSize,
  }));
}

export interface QuorumVerdict {
  /** Every member answers healthy. */
  allHealthy: boolean;
  /** A majority answers healthy: the cluster serves writes. */
  quorum: boolean;
  healthy: string[];
  unhealthy: { member: EtcdMember; why: string }[];
}

/** Joins health rows to members by client URL; a member with no row is unhealthy (unreachable). */
export function judgeQuorum(members: EtcdMember[], rows: MemberHealth[]): QuorumVerdict {
  const healthy: string[] = [];
  const unhealthy: QuorumVerdict["unhealthy"] = [];
  for (const m of members) {
    const row = rows.find((r) => r.endpoint === clientURL(m));
    if (row?.health) healthy.push(m.name);
    else
      unhealthy.push({
        member: m,
        why: row?.error?.split("\n")[0] ?? "no answer (not running, or not reachable)",
      });
  }
  return {
    allHealthy: unhealthy.length === 0,
    quorum: healthy.length > members.length / 2,
    healthy,
    unhealthy,
  };
}

export function notReadyError(verdict: QuorumVerdict, waitedMs: number): LabError {
  const who = verdict.unhealthy.map((u) => `${u.member.name} (${clientURL(u.member)}): ${u.why}`).join("; ");
  return new LabError({
    code: "NOT_READY_ETCD",
    what: `etcd not healthy after ${Math.round(waitedMs / 1000)} s (${verdict.healthy.length} of ${verdict.healthy.length + verdict.unhealthy.length} members healthy${verdict.quorum ? ", quorum held" : ", no quorum"}): ${who}`,
    where: verdict.unhealthy.map((u) => u.member.name).join(", "),
    fix: `look at the member's log: \`lab ssh ${verdict.unhealthy[0]?.member.name ?? "MASTER"} -- journalctl -u lab-etcd -n 100\``,
    source: "host",
  });
}

/**
 * Polls `probe` (the output of etcdctl health) until every member is healthy, or fails naming the
 * members that are not, and where to look. Each attempt is bounded by min(attemptTimeoutMs, time
 * left) through the probe's signal; one that does not answer counts as "no answer" from every member.
 */
export async function waitForEtcdHealthy(
  members: EtcdMember[],
  probe: (signal: AbortSignal) => Promise<string>,
  opts: {
    timeoutMs?: number;
    intervalMs?: number;
    attemptTimeoutMs?: number;
    signal?: AbortSignal;
    onProgress?: (v: QuorumVerdict) => void;
  } = {},
): Promise<QuorumVerdict> {
  let verdict = judgeQuorum(members, []);
  await waitUntilReady(
    {
      name: `etcd.health (${members.length} members)`,
      async probe(signal) {
        verdict = judgeQuorum(members, parseEndpointHealth(await probe(signal).catch(() => "")));
        opts.onProgress?.(verdict);
        return { ready: verdict.allHealthy, detail: `${verdict.healthy.length}/${members.length} healthy` };
      },
    },
    {
      timeoutMs: opts.timeoutMs ?? 120_000,
      intervalMs: opts.intervalMs ?? 1000,
      attemptTimeoutMs: opts.attemptTimeoutMs ?? 25_000,
      ...(opts.signal ? { signal: opts.signal } : {}),
      // The last verdict an attempt completed (an attempt cut off at the deadline leaves the one
      // before; none at all: every member "no answer").
      giveUp: ({ elapsedMs }) => notReadyError(verdict, elapsedMs),
    },
  );
  return verdict;
}
