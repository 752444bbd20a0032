/**
 * A real three-member etcd 3.4 cluster (Debian's /usr/bin/etcd) started with exactly the flags the
 * etcd step renders for the masters, and the peer/client certificates the lab PKI issues. Members
 * listen on their own loopback addresses (127.X.Y.11-13), the way masters listen on theirs.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execa, type ResultPromise } from "execa";
import { mkdtemp, rm, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomInt } from "node:crypto";
import { ensurePki } from "../../bootstrap/pki.ts";
import {
  etcdctlHealthArgs,
  etcdctlStatusArgs,
  etcdMemberConfig,
  etcdMembers,
  judgeQuorum,
  parseEndpointHealth,
  parseEndpointStatus,
  waitForEtcdHealthy,
} from "../../bootstrap/etcd.ts";
import { clientURL, etcdArgs } from "../../templates/etcd.ts";
import { etcdMemberRows } from "../../bootstrap/status.ts";
import { plan, type Plan } from "../../topology/plan.ts";
import { LabFile } from "../../topology/schema.ts";
import { LabState } from "../../topology/state.ts";
import { LabError } from "../../topology/errors.ts";

const net = `127.${randomInt(100, 250)}.${randomInt(1, 250)}`;
let home: string;
let p: Plan;
let state: LabState;
const procs = new Map<string, ResultPromise>();

function start(name: string): void {
  const master = p.masters.find((m) => m.name === name)!;
  const pki = (f: string) => state.path("pki", "etcd", f);
  const config = etcdMemberConfig(p, master, {
    dataDir: join(home, "data", name),
    files: {
      ca: pki("ca.crt"),
      serverCert: pki(`${name}-server.crt`),
      serverKey: pki(`${name}-server.key`),
      peerCert: pki(`${name}-peer.crt`),
      peerKey: pki(`${name}-peer.key`),
    },
  });
  // Loopback is shared with other tests on this machine: only the member's own address.
  const args = etcdArgs({ ...config, listenLocal: false });
  procs.set(
    name,
    execa("/usr/bin/etcd", args, {
      reject: false,
      stdout: "ignore",
      stderr: { file: join(home, `${name}.log`) },
    }),
  );
}

const tls = () => ({
  ca: state.path("pki", "etcd", "ca.crt"),
  cert: state.path("pki", "apiserver-etcd-client.crt"),
  key: state.path("pki", "apiserver-etcd-client.key"),
});

async function etcdctl(args: string[]) {
  return execa("etcdctl", args, { reject: false, env: { ETCDCTL_API: "3" }, timeout: 15_000 });
}

const endpoints = () => etcdMembers(p).map(clientURL);
const probe = async () => (await etcdctl(etcdctlHealthArgs(endpoints(), tls()))).stdout;

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), "lab-etcd-"));
  await mkdir(join(home, "data"), { mode: 0o700 });
  p = plan(
    LabFile.parse({
      apiVersion: "lab/v1alpha1",
      kind: "Lab",
      metadata: { name: "etcdtest" },
      spec: {
        provider: { type: "baremetal" },
        network: { cidr: `${net}.0/24`, vip: `${net}.10` },
        nodes: [1, 2, 3].map((i) => ({ name: `master-${i}`, role: "master", address: `${net}.${10 + i}` })),
      },
    }),
  );
  state = new LabState("etcdtest", home);
  await state.ensure();
  await ensurePki(state, p);
  for (const m of p.masters) start(m.name);
});

afterAll(async () => {
  for (const proc of procs.values()) proc.kill("SIGKILL");
  await Promise.allSettled(procs.values());
  await rm(home, { recursive: true, force: true });
});

describe("three-member etcd with the lab's TLS", () => {
  it("forms a healthy cluster with a leader, reachable only with a client certificate", async () => {
    const verdict = await waitForEtcdHealthy(etcdMembers(p), probe, { timeoutMs: 60_000, intervalMs: 500 });
    expect(verdict.healthy.sort()).toEqual(["master-1", "master-2", "master-3"]);
    const status = parseEndpointStatus((await etcdctl(etcdctlStatusArgs(endpoints(), tls()))).stdout);
    expect(status).toHaveLength(3);
    expect(new Set(status.map((s) => s.leader)).size).toBe(1);
    expect(status.map((s) => s.memberId)).toContain(status[0]!.leader);
    // What `lab status` shows: every member healthy, exactly one leader.
    const rows = etcdMemberRows(etcdMembers(p), parseEndpointHealth(await probe()), status);
    expect(rows.map((r) => r.healthy)).toEqual([true, true, true]);
    expect(rows.filter((r) => r.leader)).toHaveLength(1);

    const put = await etcdctl([...etcdctlHealthArgs(endpoints(), tls()).slice(0, 4), "put", "/lab/k", "v"]);
    expect(put.stdout.trim()).toBe("OK");
    // Without a client certificate the members refuse the client.
    const anon = await etcdctl([
      `--endpoints=${endpoints()[0]}`,
      `--cacert=${tls().ca}`,
      "--dial-timeout=2s",
      "get",
      "/lab/k",
    ]);
    expect(anon.exitCode).not.toBe(0);
    // A node's API client certificate is signed by the lab CA, not the etcd CA: refused as well.
    const node = await etcdctl([
      `--endpoints=${endpoints()[0]}`,
      `--cacert=${tls().ca}`,
      `--cert=${state.path("pki", "nodes", "master-1.crt")}`,
      `--key=${state.path("pki", "nodes", "master-1.key")}`,
      "--dial-timeout=2s",
      "--command-timeout=3s",
      "get",
      "/lab/k",
    ]);
    expect(node.exitCode).not.toBe(0);
  });

  it("keeps quorum and serves writes when one member is lost, and names the lost member", async () => {
    const leaderId = parseEndpointStatus((await etcdctl(etcdctlStatusArgs(endpoints(), tls()))).stdout)[0]!
      .leader;
    const status = parseEndpointStatus((await etcdctl(etcdctlStatusArgs(endpoints(), tls()))).stdout);
    const leaderEndpoint = status.find((s) => s.memberId === leaderId)!.endpoint;
    const victim = etcdMembers(p).find((m) => clientURL(m) === leaderEndpoint)!;
    procs.get(victim.name)!.kill("SIGKILL");
    await procs.get(victim.name);

    let verdict = judgeQuorum(etcdMembers(p), []);
    // The election timeout is 10 s (templates/etcd.ts, for loaded TCG masters), randomized up to 2x.
    const deadline = Date.now() + 45_000;
    while (Date.now() < deadline) {
      verdict = judgeQuorum(etcdMembers(p), parseEndpointHealth(await probe()));
      if (verdict.quorum && verdict.unhealthy.length === 1) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(verdict.quorum).toBe(true);
    expect(verdict.unhealthy.map((u) => u.member.name)).toEqual([victim.name]);
    const survivors = parseEndpointStatus((await etcdctl(etcdctlStatusArgs(endpoints(), tls()))).stdout);
    const rows = etcdMemberRows(etcdMembers(p), parseEndpointHealth(await probe()), survivors);
    expect(rows.find((r) => r.name === victim.name)).toMatchObject({ healthy: false, leader: false });
    expect(rows.filter((r) => r.leader)).toHaveLength(1);
    const put = await etcdctl([
      ...etcdctlHealthArgs(endpoints(), tls()).slice(0, 6),
      "put",
      "/lab/after",
      "still-writable",
    ]);
    expect(put.stdout.trim()).toBe("OK");

    // The readiness check fails naming the member and where to look. The deadline leaves room for
    // one etcdctl run against a dead member (its dial timeout): an attempt cut off at the deadline
    // has no verdict to name.
    const err = await waitForEtcdHealthy(etcdMembers(p), probe, { timeoutMs: 12_000, intervalMs: 300 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(LabError);
    expect((err as LabError).message).toContain(`${victim.name} (${clientURL(victim)})`);
    expect((err as LabError).message).toContain("journalctl -u lab-etcd");
    expect((err as LabError).message).toContain("quorum held");

    // The member comes back with its data dir and rejoins.
    start(victim.name);
    const back = await waitForEtcdHealthy(etcdMembers(p), probe, { timeoutMs: 30_000, intervalMs: 500 });
    expect(back.allHealthy).toBe(true);
  });
});
