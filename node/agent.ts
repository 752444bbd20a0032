/**
 * lab-agent's pods: a per-UID reconcile over a work queue, fed by the pods informer (desired) and a
 * periodic CRI relist (actual), as kubelet's pod workers and PLEG. A reconcile reads the pod from
 * the informer cache and what CRI has of it, asks the pure planner for the next actions, runs them
 * and reports the pod's status through a sink; it is safe to run again at any time, so a
 * restarted agent adopts what is running and never starts anything twice.
 */
import type { V1Pod, V1PodStatus, V1Service } from "@kubernetes/client-node";
import { runController } from "../api/controller.ts";
import type { InformerHandlers } from "../api/informer.ts";
import type { ReconcileResult } from "../api/workqueue.ts";
import { WorkQueue } from "../api/workqueue.ts";
import { podCgroupUids, removePodCgroup } from "./cgroups.ts";
import type { SandboxOptions } from "./container-config.ts";
import { gracePeriodSeconds } from "./container-config.ts";
import type { CriClient } from "./cri/client.ts";
import type { ObservedContainer, ObservedPod } from "./observed.ts";
import { currentSandbox } from "./observed.ts";
import { PodActions } from "./pod-actions.ts";
import { noPod, PodObserver } from "./pod-observer.ts";
import { PodProbers } from "./pod-probers.ts";
import { computePodStatus } from "./pod-status.ts";
import type { BackoffPolicy, PodAction, PodPlan } from "./reconcile.ts";
import { KUBELET_BACKOFF, planPod } from "./reconcile.ts";
import type { ObjectSource } from "./volumes/manager.ts";
import { VolumeManager } from "./volumes/manager.ts";
import { VolumeRefresher } from "./volumes/prepare.ts";

/** Where the agent reports what it sees. The API glue implements it with pods/status calls. */
export interface PodStatusSink {
  /** The pod's status changed (only called on change). */
  podStatus(pod: V1Pod, status: V1PodStatus): Promise<void>;
  /** A pod marked for deletion has nothing left on this node: the API object may now be removed. */
  podTerminated(pod: V1Pod): Promise<void>;
}

/**
 * The pods bound to this node (those being deleted included, with deletionTimestamp): the pods
 * informer. A pod missing here once it has synced is torn down; nothing is touched before.
 */
export interface PodSource {
  list(): V1Pod[];
  hasSynced(): boolean;
  on(handlers: InformerHandlers<V1Pod>): void;
}

/** Things worth a log line; the agent itself never prints. */
export type AgentEvent =
  | { kind: "action"; pod: string; action: PodAction }
  | { kind: "error"; pod?: string; message: string }
  | { kind: "unhealthy"; pod: string; container: string; probe: "liveness" | "startup" };

export interface AgentOptions {
  cri: CriClient;
  sink: PodStatusSink;
  pods: PodSource;
  /** Services, for the *_SERVICE_HOST/_PORT variables of containers started from now on. */
  services?: { list(): V1Service[] };
  nodeName: string;
  hostIP?: string;
  /** cgroupfs parent of all pod cgroups. */
  cgroupRoot?: string;
  /** Container logs go under it (/var/log/pods on a node). */
  logRoot: string;
  dns?: SandboxOptions["dns"];
  /** Per-pod volume directories go under it (default /var/lib/lab-agent/pods). */
  volumeRoot?: string;
  /** ConfigMaps and Secrets for volumes and env (the API); without it every reference is missing. */
  objects?: ObjectSource;
  /** How often ConfigMap/Secret volume files of running pods are refreshed (default 10 s). */
  volumeRefreshMs?: number;
  backoff?: BackoffPolicy;
  /** Periodic CRI relist, every pod reconciled again (default 2 s): catches container exits. */
  resyncMs?: number;
  /** Milliseconds per probe second (tests shrink it). */
  probeSecondMs?: number;
  /** Pods reconciled at once (default 4). */
  podConcurrency?: number;
  onEvent?: (e: AgentEvent) => void;
}

const uidOf = (p: V1Pod): string => p.metadata?.uid ?? "";

export class PodAgent {
  /** Pod UIDs to reconcile. */
  readonly queue = new WorkQueue({ baseDelayMs: 200, maxDelayMs: 30_000 });
  private readonly observer: PodObserver;
  private readonly actions: PodActions;
  private readonly probers: PodProbers;
  private readonly volumes: VolumeManager;
  private readonly refresher: VolumeRefresher;
  private lastStatus = new Map<string, string>();
  private sent = new Map<string, V1PodStatus>();
  private terminating = new Map<string, Promise<void>>();
  private reportedTerminated = new Set<string>();
  /** The last full CRI listing and when it began. */
  private snapshot: { at: number; pods: Map<string, ObservedPod> } | undefined;
  /** When this agent last changed a pod in the runtime: a listing from before is stale for that pod. */
  private touched = new Map<string, number>();
  private swept = false;
  /** The last relist found nothing and nothing is wanted: no relisting until a pod event. */
  private idle = false;
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private relisting: Promise<void> | undefined;
  private controller: { abort: AbortController; done: Promise<void> } | undefined;
  private readonly o: Required<
    Pick<AgentOptions, "cgroupRoot" | "backoff" | "resyncMs" | "probeSecondMs" | "podConcurrency">
  > &
    AgentOptions;

  constructor(options: AgentOptions) {
    this.o = {
      cgroupRoot: "/lab-pods",
      backoff: KUBELET_BACKOFF,
      resyncMs: 2000,
      probeSecondMs: 1000,
      podConcurrency: 4,
      ...options,
    };
    const error = (uid: string, message: string): void => this.emit({ kind: "error", pod: uid, message });
    this.observer = new PodObserver(options.cri);
    this.volumes = new VolumeManager(options.volumeRoot ?? "/var/lib/lab-agent/pods");
    this.refresher = new VolumeRefresher(
      { volumes: this.volumes, ...(options.objects ? { objects: options.objects } : {}) },
      options.volumeRefreshMs ?? 10_000,
      (uid, err) => error(uid, `refreshing volumes: ${err.message}`),
    );
    this.probers = new PodProbers(
      options.cri,
      {
        changed: (uid) => this.enqueue(uid),
        unhealthy: (pod, c, which) => this.restartUnhealthy(pod, c, which),
      },
      this.o.probeSecondMs,
    );
    this.actions = new PodActions({
      cri: options.cri,
      volumes: this.volumes,
      ...(options.objects ? { objects: options.objects } : {}),
      sandbox: {
        cgroupRoot: this.o.cgroupRoot,
        logRoot: options.logRoot,
        ...(options.dns ? { dns: options.dns } : {}),
      },
      nodeName: options.nodeName,
      ...(options.hostIP ? { hostIP: options.hostIP } : {}),
      services: () => options.services?.list() ?? [],
      removed: (what) => {
        if ("containerId" in what) this.probers.stopContainer(what.containerId);
        else if ("sandboxId" in what) this.observer.forgetSandbox(what.sandboxId);
        else this.refresher.forget(what.volumesOf);
      },
      error,
    });
    const enqueue = (p: V1Pod): void => this.enqueue(uidOf(p));
    options.pods.on({ add: enqueue, update: (_old, p) => enqueue(p), delete: enqueue });
  }

  /** Starts the pod workers and the relist; the first relist adopts what the runtime has. */
  async start(): Promise<void> {
    this.running = true;
    if (!this.observer.oom.readable) {
      this.emit({
        kind: "error",
        message: "cannot read /dev/kmsg: an OOM kill that containerd misses is reported as Error",
      });
    }
    const abort = new AbortController();
    const done = runController(abort.signal, {
      queue: this.queue,
      reconcile: (uid) => this.reconcile(uid),
      workers: this.o.podConcurrency,
      onError: (err) => this.emit({ kind: "error", message: err.message }),
    });
    this.controller = { abort, done };
    await this.relist();
  }

  /** Stops reconciling and probing; containers keep running (a new agent adopts them). */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    this.controller?.abort.abort();
    await this.controller?.done;
    await this.relisting;
    this.probers.stopAll();
    await Promise.allSettled(this.terminating.values());
    this.observer.close();
  }

  /** Relists the runtime now and queues every pod (or waits for the relist in flight). */
  sync(): Promise<void> {
    return this.relist();
  }

  private emit(e: AgentEvent): void {
    this.o.onEvent?.(e);
  }

  private enqueue(uid: string): void {
    if (!uid) return;
    this.queue.add(uid);
    if (this.idle) {
      this.idle = false;
      this.schedule();
    }
  }

  private schedule(): void {
    clearTimeout(this.timer);
    if (this.running && !this.idle) this.timer = setTimeout(() => void this.relist(), this.o.resyncMs);
  }

  /** The PLEG part: one full CRI listing, then every pod wanted or present is reconciled. */
  private relist(): Promise<void> {
    this.relisting ??= (async () => {
      // Until the pods are known, every running pod would look unwanted: touch nothing.
      if (!this.running || !this.o.pods.hasSynced()) return;
      const at = Date.now();
      const observed = await this.observer.all();
      this.snapshot = { at, pods: observed };
      const uids = new Set([...this.o.pods.list().map(uidOf).filter(Boolean), ...observed.keys()]);
      if (!this.swept) {
        this.swept = true;
        await this.sweep(new Set([...uids, ...this.terminating.keys()]));
      }
      for (const uid of uids) this.queue.add(uid);
      this.idle = uids.size === 0 && this.terminating.size === 0;
    })()
      .catch((err: Error) => this.emit({ kind: "error", message: `relisting pods: ${err.message}` }))
      .finally(() => {
        this.relisting = undefined;
        this.schedule();
      });
    return this.relisting;
  }

  /** Removes cgroups and volumes of pods the runtime no longer knows (an agent that died mid-teardown). */
  private async sweep(known: Set<string>): Promise<void> {
    for (const uid of await podCgroupUids(this.o.cgroupRoot)) {
      if (!known.has(uid)) await removePodCgroup(this.o.cgroupRoot, uid);
    }
    for (const uid of await this.volumes.podUids()) {
      if (!known.has(uid)) await this.volumes.tearDown(uid);
    }
  }

  /** What the runtime has of the pod: the last listing unless this agent changed the pod since. */
  private async observe(uid: string): Promise<ObservedPod> {
    const s = this.snapshot;
    const fresh = s && s.at >= (this.touched.get(uid) ?? 0) && Date.now() - s.at < 2 * this.o.resyncMs;
    return fresh ? (s.pods.get(uid) ?? noPod(uid)) : this.observer.pod(uid);
  }

  /**
   * One pod, as far as it can go now: plan, act, look again (this pod only), until nothing is left
   * to do or nothing progresses; then its status. Requeued when a back-off ends.
   */
  private async reconcile(uid: string): Promise<ReconcileResult> {
    if (!this.running || !this.o.pods.hasSynced() || this.terminating.has(uid)) return;
    const pod = this.o.pods.list().find((p) => uidOf(p) === uid);
    let obs = await this.observe(uid);
    if (!pod || pod.metadata?.deletionTimestamp)
      return this.finish(uid, pod, obs, planPod(pod, obs, Date.now(), this.o.backoff).actions);
    let plan: PodPlan | undefined;
    // sandbox, then containers: a new pod needs two rounds; a bound on rounds guards against loops
    for (let round = 0; round < 3; round++) {
      plan = planPod(pod, obs, Date.now(), this.o.backoff);
      if (plan.actions.length === 0) break;
      let progressed = false;
      for (const action of plan.actions) {
        try {
          if ((await this.execute(uid, pod, obs, action)) !== false) progressed = true;
        } catch (err) {
          this.emit({ kind: "error", pod: uid, message: `${action.kind}: ${(err as Error).message}` });
          break;
        }
      }
      // failures wait for the periodic relist rather than spinning
      if (!progressed) break;
      obs = await this.observer.pod(uid);
    }
    this.probers.sync(uid, pod, obs);
    if (currentSandbox(obs)?.state === "SANDBOX_READY") this.refresher.maybeRefresh(pod);
    await this.reportStatus(uid, pod, obs, plan);
    if (plan?.nextSyncAt) return { requeueAfterMs: Math.max(50, plan.nextSyncAt - Date.now()) };
  }

  /** A pod gone or going: tear down what is left, then say so once; forget it when nothing is left. */
  private async finish(
    uid: string,
    pod: V1Pod | undefined,
    obs: ObservedPod,
    teardown: PodAction[],
  ): Promise<void> {
    this.probers.sync(uid, undefined, obs);
    if (teardown.length) return this.teardownInBackground(uid, pod, teardown);
    if (pod && !this.reportedTerminated.has(uid)) {
      this.reportedTerminated.add(uid);
      await this.o.sink.podTerminated(pod).catch((err: Error) => {
        this.reportedTerminated.delete(uid);
        this.emit({ kind: "error", pod: uid, message: `reporting termination: ${err.message}` });
      });
    }
    if (!pod) {
      this.lastStatus.delete(uid);
      this.sent.delete(uid);
      this.reportedTerminated.delete(uid);
      this.actions.forget(uid);
      this.touched.delete(uid);
    }
  }

  /** Stops take up to the grace period: they run beside the workers, which go on with other pods. */
  private teardownInBackground(uid: string, pod: V1Pod | undefined, actions: PodAction[]): void {
    const work = (async () => {
      for (const action of actions) {
        try {
          await this.execute(uid, pod, undefined, action);
        } catch (err) {
          this.emit({ kind: "error", pod: uid, message: `${action.kind}: ${(err as Error).message}` });
        }
      }
    })().finally(() => {
      this.terminating.delete(uid);
      this.enqueue(uid);
    });
    this.terminating.set(uid, work);
  }

  private label(pod: V1Pod | undefined, fallback = ""): string {
    return pod ? `${pod.metadata?.namespace}/${pod.metadata?.name}` : fallback;
  }

  private async execute(
    uid: string,
    pod: V1Pod | undefined,
    obs: ObservedPod | undefined,
    action: PodAction,
  ): Promise<boolean | void> {
    this.emit({ kind: "action", pod: this.label(pod), action });
    try {
      return await this.actions.execute(pod, obs, action);
    } finally {
      this.touched.set(uid, Date.now());
    }
  }

  private restartUnhealthy(pod: V1Pod, c: ObservedContainer, which: "liveness" | "startup"): void {
    const uid = uidOf(pod);
    this.emit({ kind: "unhealthy", pod: this.label(pod), container: c.name, probe: which });
    // kill it; the restart policy decides what comes next
    void this.o.cri
      .stopContainer(c.id, gracePeriodSeconds(pod))
      .catch((err: Error) =>
        this.emit({ kind: "error", pod: this.label(pod), message: `stop unhealthy: ${err.message}` }),
      )
      .finally(() => {
        this.touched.set(uid, Date.now());
        this.enqueue(uid);
      });
  }

  /** Computes the pod's status and sends it if it changed since the last one sent. */
  private async reportStatus(
    uid: string,
    pod: V1Pod,
    obs: ObservedPod,
    plan: PodPlan | undefined,
  ): Promise<void> {
    const status = computePodStatus(pod, {
      observed: obs,
      probes: this.probers.results(uid),
      backingOff: plan?.backingOff ?? {},
      waiting: this.actions.waitingOf(uid),
      warnings: this.actions.warningsOf(uid),
      ...(this.o.hostIP ? { hostIP: this.o.hostIP } : {}),
      ...previousOf(this.sent.get(uid) ?? pod.status),
      now: new Date(),
    });
    const key = JSON.stringify(status);
    if (this.lastStatus.get(uid) === key) return;
    try {
      await this.o.sink.podStatus(pod, status);
      this.lastStatus.set(uid, key);
      this.sent.set(uid, status);
    } catch (err) {
      this.emit({ kind: "error", pod: uid, message: `reporting status: ${(err as Error).message}` });
    }
  }
}

function previousOf(status: V1PodStatus | undefined): { previous?: V1PodStatus } {
  return status ? { previous: status } : {};
}
