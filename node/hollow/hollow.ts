/**
 * Hollow nodes (like kubemark's hollow kubelet and kwok): Nodes that register, renew their Lease
 * in kube-node-lease and post Ready like lab-agent does, and report the pods bound to them Running
 * (or Succeeded, or finish their deletion) without starting any container. N nodes share one
 * process, one API client (one keep-alive connection pool), one pod informer and one node
 * informer; their heartbeats are spread over the renewal period and capped in flight, so 1,000
 * nodes cost about 100 lease writes per second and no burst.
 */
import type { V1Lease, V1Node, V1NodeStatus, V1Pod } from "@kubernetes/client-node";
import { ApiStatusError, type LabClient } from "../../api/client.ts";
import { Informer, objectKey } from "../../api/informer.ts";
import { clientListWatch } from "../../api/list-watch.ts";
import type { ReconcileResult } from "../../api/workqueue.ts";
import { runWorkers, WorkQueue } from "../../api/workqueue.ts";
import {
  AGENT_VERSION,
  LEASE_NAMESPACE,
  desiredNode,
  nodeStatus,
  renewedLease,
  type NodeRegistration,
  type Readiness,
} from "../node-status.ts";
import { LEASE_RENEW_MS } from "../heartbeat.ts";
import { PodIpPool, fallbackPodCidr, hollowNodeIP } from "./addresses.ts";
import { hollowDecision, isFinished } from "./pod-status.ts";

export const HOLLOW_LABEL = "lab.io/hollow";

export interface HollowOptions {
  client: LabClient;
  nodeNames: string[];
  capacity: { cpu: string; memory: string; pods: string };
  labels?: Record<string, string>;
  /** How long a run-to-completion pod "runs" before it is Succeeded. */
  runMs: number;
  leaseRenewMs?: number;
  /** How often each node re-posts its status (Ready, lastHeartbeatTime) besides its Lease. */
  statusReportMs?: number;
  /** API calls of heartbeats and registrations in flight at most. */
  concurrency?: number;
  /** Pod status writers. */
  workers?: number;
  /** Without a spec.podCIDR from node IPAM after this long, a node uses a CIDR from its name. */
  podCidrWaitMs?: number;
  log: (line: string) => void;
}

const READY: Readiness = {
  ready: true,
  reason: "AgentReady",
  message: "lab-agent (hollow) is posting ready status",
};

interface HollowNode {
  reg: NodeRegistration;
  registered: boolean;
  registeredAt: number;
  lease?: V1Lease;
  status?: V1NodeStatus;
  nextAt: { register: number; lease: number; status: number };
  busy: boolean;
  pool?: PodIpPool;
  failures: number;
}

type HeartbeatKind = keyof HollowNode["nextAt"];

/**
 * The next `slots` heartbeat calls to make, pure: registrations and lease renewals that are due,
 * most overdue first, then due status reports, most overdue first. Busy nodes are skipped.
 */
export function dueHeartbeats<N extends Pick<HollowNode, "registered" | "busy" | "nextAt">>(
  nodes: Iterable<N>,
  now: number,
  slots: number,
): { node: N; kind: HeartbeatKind }[] {
  const urgent: { node: N; kind: HeartbeatKind; at: number }[] = [];
  const later: { node: N; kind: HeartbeatKind; at: number }[] = [];
  for (const node of nodes) {
    if (node.busy) continue;
    const a = node.nextAt;
    if (!node.registered) {
      if (a.register <= now) urgent.push({ node, kind: "register", at: a.register });
    } else if (a.lease <= now) urgent.push({ node, kind: "lease", at: a.lease });
    else if (a.status <= now) later.push({ node, kind: "status", at: a.status });
  }
  const byDue = (x: { at: number }, y: { at: number }): number => x.at - y.at;
  return [...urgent.sort(byDue), ...later.sort(byDue)]
    .slice(0, Math.max(0, slots))
    .map(({ node, kind }) => ({ node, kind }));
}

const isCode = (err: unknown, code: number): boolean => err instanceof ApiStatusError && err.code === code;
const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Logs each distinct error text at most once per interval, with how often it happened meanwhile. */
function throttledLog(log: (line: string) => void, intervalMs = 10_000): (line: string) => void {
  const seen = new Map<string, { at: number; count: number }>();
  return (line) => {
    const now = Date.now();
    const s = seen.get(line);
    if (s && now - s.at < intervalMs) {
      s.count++;
      return;
    }
    log(s && s.count > 0 ? `${line} (and ${s.count} more like it)` : line);
    seen.set(line, { at: now, count: 0 });
  };
}

export class HollowNodes {
  private readonly nodes = new Map<string, HollowNode>();
  private readonly queue = new WorkQueue({ baseDelayMs: 50, maxDelayMs: 10_000 });
  private readonly pods: Informer<V1Pod>;
  private readonly nodeInformer: Informer<V1Node>;
  private inFlight = 0;
  private registeredCount = 0;
  private readonly startedAt = Date.now();
  private readonly warn: (line: string) => void;

  constructor(private readonly o: HollowOptions) {
    this.warn = throttledLog(o.log);
    const now = Date.now();
    for (const name of o.nodeNames) {
      this.nodes.set(name, {
        reg: {
          nodeName: name,
          nodeIP: hollowNodeIP(name),
          labels: { [HOLLOW_LABEL]: "true", ...o.labels },
          taints: [],
          capacity: o.capacity,
          nodeInfo: {
            architecture: "amd64",
            operatingSystem: "linux",
            kernelVersion: "hollow",
            osImage: "lab hollow node",
            machineID: name,
            systemUUID: name,
            bootID: `${name}-${now}`,
            containerRuntimeVersion: "hollow://0",
            kubeletVersion: AGENT_VERSION,
            kubeProxyVersion: AGENT_VERSION,
          },
        },
        registered: false,
        registeredAt: 0,
        // registrations in name order; later heartbeats keep this spread over the period
        nextAt: { register: now, lease: 0, status: 0 },
        busy: false,
        failures: 0,
      });
    }
    const single = o.nodeNames.length === 1 ? o.nodeNames[0] : undefined;
    // One watch for all: the pods of one node, or every bound pod (filtered to ours here).
    this.pods = new Informer<V1Pod>(
      clientListWatch(o.client)<V1Pod>("pods", undefined, {
        fieldSelector: single ? `spec.nodeName=${single}` : "spec.nodeName!=",
      }),
      { onError: (err) => this.warn(`watching pods: ${errText(err)}`) },
    );
    this.nodeInformer = new Informer<V1Node>(
      clientListWatch(o.client)<V1Node>(
        "nodes",
        undefined,
        single ? { fieldSelector: `metadata.name=${single}` } : {},
      ),
      { onError: (err) => this.warn(`watching nodes: ${errText(err)}`) },
    );
    const enqueue = (p: V1Pod): void => {
      if (this.nodes.has(p.spec?.nodeName ?? "")) this.queue.add(objectKey(p));
    };
    this.pods.on({
      add: enqueue,
      update: (_old, p) => enqueue(p),
      delete: (p) => {
        const n = this.nodes.get(p.spec?.nodeName ?? "");
        n?.pool?.release(p.metadata?.uid ?? "");
      },
    });
  }

  /** Nodes registered so far. */
  get registered(): number {
    return this.registeredCount;
  }

  /** Runs until `signal` aborts; then stops heartbeats (the Nodes stay, as a stopped kubelet's do). */
  async run(signal: AbortSignal): Promise<void> {
    signal.addEventListener("abort", () => this.queue.shutDown(), { once: true });
    const informers = [this.pods.run(signal), this.nodeInformer.run(signal)];
    const tick = setInterval(() => this.heartbeatTick(signal), 100);
    this.heartbeatTick(signal);
    try {
      await runWorkers(this.queue, (k) => this.reconcile(k), {
        workers: this.o.workers ?? 16,
        onError: (err) => this.warn(`pod ${errText(err)}`),
      });
    } finally {
      clearInterval(tick);
      await Promise.all(informers);
      while (this.inFlight > 0) await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * Starts what is due, most overdue first, at most `concurrency` calls at once. Leases (and
   * registrations) go before status reports: when the API is slow every node still gets its turn
   * in order, rather than the first nodes renewing and the last ones starving into NotReady.
   */
  private heartbeatTick(signal: AbortSignal): void {
    if (signal.aborted) return;
    const slots = this.concurrency - this.inFlight;
    if (slots <= 0) return;
    for (const { node: n, kind } of dueHeartbeats(this.nodes.values(), Date.now(), slots)) {
      const task =
        kind === "register"
          ? () => this.register(n)
          : kind === "lease"
            ? () => this.renewLease(n)
            : () => this.writeStatus(n);
      n.busy = true;
      this.inFlight++;
      void task()
        .then(() => (n.failures = 0))
        .catch((err: unknown) => {
          n.failures++;
          // retry soon, backing off per node up to one renewal period
          const delay = Math.min(500 * 2 ** Math.min(n.failures, 5), this.o.leaseRenewMs ?? LEASE_RENEW_MS);
          n.nextAt[n.registered ? kind : "register"] = Date.now() + delay;
          if (!signal.aborted) this.warn(`node ${n.reg.nodeName}: ${errText(err)}`);
        })
        .finally(() => {
          n.busy = false;
          this.inFlight--;
        });
    }
  }

  /** Calls in flight at most: given, or enough for every lease once a period at 1 s per call. */
  private get concurrency(): number {
    const periodS = (this.o.leaseRenewMs ?? LEASE_RENEW_MS) / 1000;
    return this.o.concurrency ?? Math.max(32, Math.ceil(this.nodes.size / periodS));
  }

  private async register(n: HollowNode): Promise<void> {
    const c = this.o.client;
    let node: V1Node;
    try {
      node = await c.create("nodes", desiredNode(n.reg));
    } catch (err) {
      if (!isCode(err, 409)) throw err;
      const existing = await c.get("nodes", n.reg.nodeName);
      node = await c.update("nodes", desiredNode(n.reg, existing));
    }
    n.status = node.status;
    await this.writeStatus(n);
    const now = Date.now();
    n.registered = true;
    n.registeredAt = now;
    n.nextAt.lease = now; // the first lease at once, then every period from there
    // status reports spread over their period, so they do not all come due together
    n.nextAt.status = now + Math.random() * (this.o.statusReportMs ?? 60_000);
    this.registeredCount++;
    if (this.registeredCount === this.nodes.size || this.registeredCount % 100 === 0)
      this.o.log(
        `registered ${this.registeredCount}/${this.nodes.size} hollow nodes in ${((now - this.startedAt) / 1000).toFixed(1)} s`,
      );
    // pods bound before this node (re)registered
    for (const p of this.pods.cache.values())
      if (p.spec?.nodeName === n.reg.nodeName) this.queue.add(objectKey(p));
  }

  private async writeStatus(n: HollowNode): Promise<void> {
    const status = nodeStatus(n.reg, READY, new Date(), n.status);
    try {
      const node = await this.o.client.updateStatus("nodes", {
        apiVersion: "v1",
        kind: "Node",
        metadata: { name: n.reg.nodeName },
        status,
      });
      n.status = node.status ?? status;
    } catch (err) {
      if (isCode(err, 404) && n.registered) {
        // the Node was deleted under us: register it again
        n.registered = false;
        this.registeredCount--;
        n.nextAt.register = Date.now();
      }
      throw err;
    }
    n.nextAt.status = Date.now() + (this.o.statusReportMs ?? 60_000);
  }

  private async renewLease(n: HollowNode): Promise<void> {
    const c = this.o.client;
    const name = n.reg.nodeName;
    const period = this.o.leaseRenewMs ?? LEASE_RENEW_MS;
    const due = n.nextAt.lease;
    try {
      n.lease = n.lease
        ? await c.update("leases", renewedLease(name, new Date(), n.lease))
        : await c.create("leases", renewedLease(name, new Date()));
    } catch (err) {
      n.lease = undefined;
      if (!isCode(err, 409)) throw err;
      // a renewal that landed after the client gave up on it, or a Lease from an earlier run
      const fresh = await c.get("leases", name, LEASE_NAMESPACE);
      n.lease = await c.update("leases", renewedLease(name, new Date(), fresh));
    }
    // keep the node's slot in the period (no drift towards bunching), but never in the past
    n.nextAt.lease = Math.max(due + period, Date.now() + period / 2);
  }

  /** The node's pod IP pool: from spec.podCIDR once IPAM set it, else (after a wait) from its name. */
  private poolFor(n: HollowNode): PodIpPool | undefined {
    if (n.pool) return n.pool;
    const cidr = this.nodeInformer.get(n.reg.nodeName)?.spec?.podCIDR;
    if (cidr) n.pool = new PodIpPool(cidr);
    else if (Date.now() - n.registeredAt >= (this.o.podCidrWaitMs ?? 3_000))
      n.pool = new PodIpPool(fallbackPodCidr(n.reg.nodeName));
    return n.pool;
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const pod = this.pods.get(key);
    if (!pod) return;
    const n = this.nodes.get(pod.spec?.nodeName ?? "");
    if (!n) return;
    if (!n.registered) return { requeueAfterMs: 1_000 };
    const uid = pod.metadata?.uid ?? "";
    const name = pod.metadata?.name ?? "";
    const namespace = pod.metadata?.namespace;
    if (isFinished(pod) && !pod.metadata?.deletionTimestamp) {
      n.pool?.release(uid);
      return;
    }
    const pool = this.poolFor(n);
    if (!pool) return { requeueAfterMs: 500 };
    if (pod.metadata?.deletionTimestamp) {
      await this.o.client
        .delete("pods", name, namespace, { gracePeriodSeconds: 0, preconditions: { uid } })
        .catch((err: unknown) => {
          if (!isCode(err, 404) && !isCode(err, 409)) throw err;
        });
      pool.release(uid);
      return;
    }
    const podIP = pool.allocate(uid, pod.status?.podIP);
    if (!podIP) throw new Error(`no free pod IP left in ${pool.cidr} of node ${n.reg.nodeName}`);
    const action = hollowDecision(pod, {
      hostIP: n.reg.nodeIP,
      podIP,
      now: new Date(),
      runMs: this.o.runMs,
    });
    if (action.kind === "finish-deletion") return; // handled above
    if (action.kind === "status") {
      await this.o.client
        .updateStatus("pods", {
          apiVersion: "v1",
          kind: "Pod",
          metadata: { name, namespace },
          status: action.status,
        })
        .catch((err: unknown) => {
          if (!isCode(err, 404)) throw err;
        });
      if (action.status.phase === "Succeeded") pool.release(uid);
    }
    return action.recheckMs !== undefined ? { requeueAfterMs: action.recheckMs } : undefined;
  }
}
