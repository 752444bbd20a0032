/**
 * The agent's network loops, each a one-key reconcile over the informer caches: the service proxy
 * (nftables from Services + Endpoints), the node-local cluster DNS zone (the same two), and the
 * routes to the other nodes' pod CIDRs (Nodes). A burst of events is one reconcile; a failure is
 * retried with backoff.
 */
import type { V1Endpoints, V1Node, V1Service } from "@kubernetes/client-node";
import { runController } from "../api/controller.ts";
import type { Informer, KubeObject } from "../api/informer.ts";
import { WorkQueue } from "../api/workqueue.ts";
import { DnsServer, upstreamsFrom } from "./dns/server.ts";
import { buildZone } from "./dns/zone.ts";
import { ServiceProxy } from "./proxy/proxy.ts";
import type { LocalDns } from "./proxy/ruleset.ts";
import { desiredRoutes, syncRoutes } from "./routes.ts";

type Log = (msg: string) => void;

/** Unchanged routes are re-checked (repaired) this often. */
const ROUTES_RECHECK_MS = 60_000;

export interface NetworkLoopsOptions {
  services: Informer<V1Service>;
  endpoints: Informer<V1Endpoints>;
  nodes: Informer<V1Node>;
  nodeName: string;
  clusterDomain: string;
  /** Command prefix for nft and ip (nsenter into a test netns). */
  prefix: string[];
  dns?: { server: DnsServer; localDns: LocalDns } | undefined;
  log: Log;
}

/** A queue that gets `key` on every event of the informers. */
function queueOn(key: string, ...informers: Informer<KubeObject>[]): WorkQueue {
  const queue = new WorkQueue({ baseDelayMs: 250, maxDelayMs: 30_000 });
  const add = (): void => queue.add(key);
  for (const i of informers) i.on({ add, update: add, delete: add });
  return queue;
}

/** Runs the proxy, DNS and routes loops until `signal` aborts. */
export function runNetworkLoops(signal: AbortSignal, o: NetworkLoopsOptions): Promise<void>[] {
  const onError = (err: Error): void => o.log(err.message);
  // both lists known first: never an empty ruleset or zone by accident
  const known = (): boolean => o.services.hasSynced() && o.endpoints.hasSynced();
  const loops: Promise<void>[] = [];

  const proxy = new ServiceProxy(o.prefix, o.dns?.localDns);
  loops.push(
    runController(signal, {
      queue: queueOn("service proxy", o.services, o.endpoints),
      reconcile: async () => {
        if (known()) await proxy.update(o.services.list(), o.endpoints.list());
      },
      onError,
    }),
  );

  const dns = o.dns?.server;
  if (dns)
    loops.push(
      runController(signal, {
        queue: queueOn("cluster DNS", o.services, o.endpoints),
        reconcile: async () => {
          if (known()) dns.setZone(buildZone(o.clusterDomain, o.services.list(), o.endpoints.list()));
        },
        onError,
      }),
    );

  // Every node's status write (each node, every 40 s) is a nodes event here; the routes change only
  // when a node or its pod CIDR does. Unchanged routes are applied again (repaired) once a minute.
  let synced = "";
  const RECHECK = "pod routes (recheck)";
  loops.push(
    runController(signal, {
      queue: queueOn("pod routes", o.nodes),
      resync: { everyMs: ROUTES_RECHECK_MS, keys: () => [RECHECK] },
      reconcile: async (key) => {
        if (!o.nodes.hasSynced()) return;
        const want = desiredRoutes(o.nodes.list(), o.nodeName);
        const text = JSON.stringify(want);
        if (text === synced && key !== RECHECK) return;
        synced = ""; // until it worked
        await syncRoutes(want, o.prefix);
        synced = text;
      },
      onError,
    }),
  );
  return loops;
}

/** The node-local cluster DNS; a failure to listen leaves pods running without it. */
export async function startDns(
  o: { clusterIPs: string[]; listen: string; resolvConf: string; clusterDomain: string },
  log: Log,
): Promise<{ server: DnsServer; localDns: LocalDns } | undefined> {
  const m = /^(.+):(\d+)$/.exec(o.listen);
  if (!m) throw new Error(`--dns-listen must be IP:PORT (got "${o.listen}")`);
  const [address, port] = [m[1]!, Number(m[2])];
  const upstreams = await upstreamsFrom(o.resolvConf, o.clusterIPs);
  const server = new DnsServer({
    domain: o.clusterDomain,
    address,
    port,
    upstreams,
    onError: (err) => log(`cluster DNS: ${err instanceof Error ? err.message : String(err)}`),
  });
  try {
    await server.start();
  } catch (err) {
    log(
      `cluster DNS: cannot listen on ${address}:${port}: ${err instanceof Error ? err.message : String(err)}; pods get no cluster DNS`,
    );
    return undefined;
  }
  const forward = upstreams.map((u) => u.address).join(",") || "none (REFUSED)";
  log(`cluster DNS ${o.clusterIPs.join(",")}:53 answered on ${address}:${port}; other names to ${forward}`);
  return { server, localDns: { clusterIPs: o.clusterIPs, address, port } };
}
