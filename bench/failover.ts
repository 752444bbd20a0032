/**
 * Failover on this host: a real lab-server process over a local three-member etcd (client TLS),
 * a create loop through the API, and one etcd fault after another, all in one run. Per fault it
 * prints the API gap (the longest interval between two acknowledged writes of the create loop
 * while the fault lasts and until the API is ready again, next to the same measure with no fault)
 * and the acknowledged writes lost, with the watch lag (longest time from a create's acknowledgement
 * to a resuming API watch delivering it); then lab-server's start time (spawn to /readyz 200).
 *
 *   npx tsx bench/failover.ts [--starts 3]
 *
 * Not measured here: lab-server's start time inside a TCG guest and the VIP failover of a real
 * lab (a master powered off, keepalived moving the address). Those are measured by engineer
 * "deadlines" and by the e2e chaos run on the default lab.
 *
 * The slow etcd is a delaying TCP proxy in front of each member (this host's kernel has no
 * sch_netem for `tc netem`).
 */
import { EtcdCluster } from "../test/helpers/etcd-cluster.ts";
import {
  adminTls,
  ApiLoad,
  crashLines,
  startLabServer,
  waitReady,
  watchChurn,
} from "../test/helpers/fault-load.ts";
import { makeTestPki } from "../test/helpers/test-pki.ts";
import { sleep } from "../lib/sleep.ts";

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const STARTS = arg("starts", 3);

interface Row {
  fault: string;
  from: number;
  to: number;
}

async function main(): Promise<void> {
  const pki = await makeTestPki();
  const cluster = await EtcdCluster.start({ pki });
  const starts: number[] = [];
  const server = await startLabServer(cluster, pki);
  starts.push(server.startMs);
  const tls = await adminTls(pki);
  const load = new ApiLoad(server.port, tls, "failover");
  const rows: Row[] = [];
  try {
    await load.start();
    await sleep(2_000);
    /** Runs one fault; the window ends once etcd is healthy and /readyz is 200, plus 2 s of writes. */
    const fault = async (name: string, inject: () => Promise<void>): Promise<void> => {
      const from = Date.now();
      await inject();
      await cluster.waitHealthy(60_000);
      await waitReady(server.healthPort, 30_000);
      await sleep(2_000);
      rows.push({ fault: name, from, to: Date.now() });
      process.stderr.write(`  ${name}: done\n`);
    };
    await fault("none (baseline, 12 s)", () => sleep(12_000));
    await fault("SIGSTOP of the leader, 10 s", async () => {
      const { leader } = await cluster.status();
      cluster.signal(leader, "SIGSTOP");
      await sleep(10_000);
      cluster.signal(leader, "SIGCONT");
    });
    await fault("SIGKILL of a follower, restart after 3 s", async () => {
      const { leader } = await cluster.status();
      const v = (leader + 1) % 3;
      await cluster.kill(v);
      await sleep(3_000);
      cluster.restart(v);
    });
    await fault("SIGKILL of the leader, restart after 3 s", async () => {
      const { leader } = await cluster.status();
      await cluster.kill(leader);
      await sleep(3_000);
      cluster.restart(leader);
    });
    await fault("leader change (move-leader)", async () => {
      const { leader } = await cluster.status();
      await cluster.moveLeader((leader + 1) % 3);
      await sleep(3_000);
    });
    await fault("1,000 watches cancelled across a leader restart", async () => {
      const { leader } = await cluster.status();
      const churn = watchChurn(
        server.port,
        tls,
        `/api/v1/namespaces/failover/configmaps?watch=true&resourceVersion=${load.namespaceRv}`,
      );
      while (churn.started() < 200) await sleep(50);
      await cluster.kill(leader);
      await sleep(2_000);
      cluster.restart(leader);
      await churn.done;
    });
    await fault("slow etcd: +500 ms per packet, 10 s", async () => {
      cluster.setDelay(500);
      await sleep(10_000);
      cluster.setDelay(0);
    });
    // the watch may still be catching up (a slow etcd): let it deliver the last write first
    const lastRv = load.acks[load.acks.length - 1]?.rv ?? 0;
    for (const end = Date.now() + 30_000; load.watchedRv < lastRv && Date.now() < end;) await sleep(100);
    await load.stop();
    const lost = new Set(await load.lost());
    const baseline = load.gapMs(rows[0]!.from, rows[0]!.to);
    const alive = server.alive();
    const crashes = crashLines(server.stderr()).length;
    for (let i = 1; i < STARTS; i++) {
      const extra = await startLabServer(cluster, pki);
      starts.push(extra.startMs);
      await extra.stop();
    }

    const w = Math.max(...rows.map((r) => r.fault.length));
    console.log(`\nfailover on this host: lab-server (1 process) over 3 local etcd members, one create loop`);
    console.log(
      `${"fault".padEnd(w)}  ${"API gap".padStart(9)}  ${"x baseline".padStart(10)}  acked  lost  ${"watch lag".padStart(9)}`,
    );
    for (const r of rows) {
      const gap = load.gapMs(r.from, r.to);
      const acked = load.acks.filter((a) => a.at >= r.from && a.at <= r.to);
      const lostHere = acked.filter((a) => lost.has(a.name)).length;
      console.log(
        `${r.fault.padEnd(w)}  ${`${(gap / 1000).toFixed(2)} s`.padStart(9)}  ${(gap / baseline).toFixed(1).padStart(10)}  ${String(acked.length).padStart(5)}  ${String(lostHere).padStart(4)}  ${`${(load.watchLagMs(r.from, r.to) / 1000).toFixed(2)} s`.padStart(9)}`,
      );
    }
    console.log(
      `acknowledged writes: ${load.acks.length}, lost: ${lost.size}; watch: ${load.watchProblems().length} gaps, ${load.watchGone} 410s; lab-server alive: ${alive}, crash lines in stderr: ${crashes}`,
    );
    const watchLog = server
      .stderr()
      .split("\n")
      .filter((l) => l.startsWith("etcd watch"));
    console.log(`lab-server's etcd watch log (${watchLog.length} lines):\n  ${watchLog.join("\n  ")}`);
    const sorted = [...starts].sort((a, b) => a - b);
    console.log(
      `lab-server start (spawn -> /readyz 200, node --import tsx, this host): ${starts.map((s) => `${(s / 1000).toFixed(2)} s`).join(", ")} (median ${(sorted[Math.floor(sorted.length / 2)]! / 1000).toFixed(2)} s)`,
    );
  } finally {
    await load.stop().catch(() => undefined);
    await server.stop();
    await cluster.destroy();
    await pki.cleanup();
  }
}

await main();
