/**
 * lab-agent's pod sync: desired pods in, CRI actions out, pod statuses reported through a sink.
 * One sync at a time; every decision comes from the pure planner over what CRI reports now, so a
 * restarted agent adopts what is running and never starts anything twice.
 */
import type { V1Pod, V1PodStatus, V1Service } from "@kubernetes/client-node";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { removePodCgroup, podCgroupUids } from "./cgroups.ts";
import { applyOomKills, KernelOomLog } from "./oom.ts";
import type { SandboxOptions } from "./container-config.ts";
import { gracePeriodSeconds, sandboxConfig } from "./container-config.ts";
import type { CriClient } from "./cri/client.ts";
import type { ContainerStatus } from "./cri/types.ts";
import { isNotFound } from "./cri/client.ts";
import { GRACE_PERIOD, MANAGED_BY, MANAGED_BY_AGENT, POD_UID } from "./labels.ts";
import type { ObservedContainer, ObservedPod, ObservedSandbox } from "./observed.ts";
import { currentSandbox, nsToMs, statusStillValid } from "./observed.ts";
import type { ProbeResult } from "./pod-status.ts";
import { computePodStatus } from "./pod-status.ts";
import { ContainerProber } from "./probes.ts";
import type { BackoffPolicy, PodAction, PodPlan } from "./reconcile.ts";
import { KUBELET_BACKOFF, planPod } from "./reconcile.ts";
import type { ObjectSource } from "./volumes/manager.ts";
import { VolumeManager } from "./volumes/manager.ts";
import { prepareContainer, VolumeRefresher } from "./volumes/prepare.ts";

/** Where the agent reports what it sees. The API glue implements it with pods/status calls. */
export interface PodStatusSink {
  /** The pod's status changed (only called on change). */
  podStatus(pod: V1Pod, status: V1PodStatus): Promise<void>;
  /** A pod marked for deletion has nothing left on this node: the API object may now be removed. */
  podTerminated(pod: V1Pod): Promise<void>;
}

/** Things worth a log line; the agent itself never prints. */
export type AgentEvent =
  | { kind: "action"; pod: string; action: PodAction }
  | { kind: "error"; pod?: string; message: string }
  | { kind: "unhealthy"; pod: string; container: string; probe: "liveness" | "startup" };

export interface AgentOptions {
  cri: CriClient;
  sink: PodStatusSink;
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
  /** Periodic resync even without changes (default 2 s): catches container exits. */
  resyncMs?: number;
  /** Milliseconds per probe second (tests shrink it). */
  probeSecondMs?: number;
  /** Pods synced at once (default 4). */
  podConcurrency?: number;
  onEvent?: (e: AgentEvent) => void;
}

const MANAGED = { [MANAGED_BY]: MANAGED_BY_AGENT };

export class PodAgent {
  private pods = new Map<string, V1Pod>();
  private services: V1Service[] = [];
  private lastStatus = new Map<string, string>();
  private sent = new Map<string, V1PodStatus>();
  private podsKnown = false;
  private swept = false;
  private waiting = new Map<string, Record<string, { reason: string; message: string }>>();
  private probers = new Map<string, ContainerProber>();
  private terminating = new Map<string, Promise<void>>();
  private reportedTerminated = new Set<string>();
  private unhealthy = new Set<string>();
  private sandboxIPs = new Map<string, string>();
  /** Last CRI ContainerStatus per container, reused while the listed state says it cannot differ. */
  private containerStatuses = new Map<string, ContainerStatus>();
  private syncing: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private nextSyncAt: number | undefined;
  private volumes: VolumeManager;
  private volumeWarnings = new Map<string, string[]>();
  private refresher: VolumeRefresher;
  private oom = new KernelOomLog();
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
    this.volumes = new VolumeManager(options.volumeRoot ?? "/var/lib/lab-agent/pods");
    this.refresher = new VolumeRefresher(
      { volumes: this.volumes, ...(options.objects ? { objects: options.objects } : {}) },
      options.volumeRefreshMs ?? 10_000,
      (uid, err) => this.emit({ kind: "error", pod: uid, message: `refreshing volumes: ${err.message}` }),
    );
  }

  /**
   * The full set of pods bound to this node (pods being deleted included, with deletionTimestamp),
   * from a synced informer: a pod missing here is torn down. Nothing is touched before the first call.
   */
  setPods(pods: V1Pod[]): void {
    this.podsKnown = true;
    this.pods = new Map(pods.filter((p) => p.metadata?.uid).map((p) => [p.metadata!.uid!, p]));
    this.requestSync();
  }

  /** Services, for the *_SERVICE_HOST/_PORT variables of containers started from now on. */
  setServices(services: V1Service[]): void {
    this.services = services;
  }

  /** Adopts what the runtime has (removing leftovers of pods no longer wanted) and starts syncing. */
  async start(): Promise<void> {
    this.running = true;
    if (!this.oom.readable) {
      this.emit({
        kind: "error",
        message: "cannot read /dev/kmsg: an OOM kill that containerd misses is reported as Error",
      });
    }
    await this.sync();
    this.schedule();
  }

  /** Removes cgroups of pods the runtime no longer knows (an agent that died mid-teardown). */
  private async sweepCgroups(observed: Map<string, ObservedPod>): Promise<void> {
    const known = new Set([...this.pods.keys(), ...observed.keys(), ...this.terminating.keys()]);
    for (const uid of await podCgroupUids(this.o.cgroupRoot)) {
      if (!known.has(uid)) await removePodCgroup(this.o.cgroupRoot, uid);
    }
    for (const uid of await this.volumes.podUids()) {
      if (!known.has(uid)) await this.volumes.tearDown(uid);
    }
  }

  /** Stops syncing and probing; containers keep running (a new agent adopts them). */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    for (const p of this.probers.values()) p.stop();
    this.probers.clear();
    await this.syncing;
    await Promise.allSettled(this.terminating.values());
    this.oom.close();
  }

  /** Runs one sync now (or waits for the one in flight and runs another). */
  async sync(): Promise<void> {
    if (this.syncing) {
      this.again = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      do {
        this.again = false;
        try {
          await this.syncOnce();
        } catch (err) {
          this.emit({ kind: "error", message: `sync failed: ${(err as Error).message}` });
        }
      } while (this.again);
    })();
    try {
      await this.syncing;
    } finally {
      this.syncing = undefined;
      // re-arm after every sync, so a back-off that ends before the periodic tick is not late
      this.schedule();
    }
  }

  private requestSync(): void {
    if (this.running) void this.sync();
  }

  private schedule(): void {
    if (!this.running) return;
    if (this.timer) clearTimeout(this.timer);
    const now = Date.now();
    const wait = Math.max(50, Math.min(this.o.resyncMs, (this.nextSyncAt ?? Infinity) - now));
    this.timer = setTimeout(() => void this.sync(), wait);
  }

  private emit(e: AgentEvent): void {
    this.o.onEvent?.(e);
  }

  /** Everything the runtime has that this agent made, grouped by pod UID. */
  private async observe(selector: Record<string, string> = MANAGED): Promise<Map<string, ObservedPod>> {
    const cri = this.o.cri;
    const [sandboxes, containers] = await Promise.all([
      cri.listPodSandbox(selector),
      cri.listContainers({ labelSelector: selector }),
    ]);
    const pods = new Map<string, ObservedPod>();
    const get = (uid: string): ObservedPod => {
      let p = pods.get(uid);
      if (!p) pods.set(uid, (p = { uid, sandboxes: [], containers: [] }));
      return p;
    };
    for (const s of sandboxes) {
      const uid = s.labels[POD_UID] ?? s.metadata.uid;
      let ip = this.sandboxIPs.get(s.id);
      if (ip === undefined && s.state === "SANDBOX_READY") {
        const st = await cri.podSandboxStatus(s.id).catch(() => undefined);
        ip = st?.network?.ip ?? "";
        this.sandboxIPs.set(s.id, ip);
      }
      const grace = Number(s.annotations[GRACE_PERIOD]);
      const o: ObservedSandbox = {
        id: s.id,
        attempt: s.metadata.attempt,
        state: s.state,
        createdAt: nsToMs(s.createdAt),
        name: s.metadata.name,
        namespace: s.metadata.namespace,
        ...(ip ? { ip } : {}),
        ...(Number.isFinite(grace) ? { graceSeconds: grace } : {}),
      };
      get(uid).sandboxes.push(o);
    }
    const statuses = await Promise.all(
      containers.map((c) => {
        const known = this.containerStatuses.get(c.id);
        if (known && statusStillValid(known, c.state, Date.now())) return known;
        return cri.containerStatus(c.id).then(
          (st) => (this.containerStatuses.set(c.id, st), st),
          () => undefined,
        );
      }),
    );
    if (selector === MANAGED) {
      // a full listing: forget containers that are gone
      const listed = new Set(containers.map((c) => c.id));
      for (const id of this.containerStatuses.keys()) if (!listed.has(id)) this.containerStatuses.delete(id);
    }
    containers.forEach((c, i) => {
      const st = statuses[i];
      if (!st) return;
      const uid = c.labels[POD_UID] ?? "";
      const grace = Number(c.annotations[GRACE_PERIOD]);
      const o: ObservedContainer = {
        id: c.id,
        sandboxId: c.podSandboxId,
        name: c.metadata.name,
        attempt: c.metadata.attempt,
        state: st.state,
        createdAt: nsToMs(st.createdAt),
        startedAt: nsToMs(st.startedAt),
        finishedAt: nsToMs(st.finishedAt),
        exitCode: st.exitCode,
        reason: st.reason,
        message: st.message,
        image: st.image?.image ?? "",
        imageRef: st.imageRef,
        ...(Number.isFinite(grace) ? { graceSeconds: grace } : {}),
      };
      get(uid).containers.push(o);
    });
    applyOomKills(pods, this.oom);
    return pods;
  }

  private async syncOnce(): Promise<void> {
    // Until the first setPods, every running pod would look unwanted: touch nothing.
    if (!this.podsKnown) return;
    const observed = await this.observe();
    if (!this.swept) {
      this.swept = true;
      await this.sweepCgroups(observed);
    }
    this.nextSyncAt = undefined;
    const uids = new Set([...this.pods.keys(), ...observed.keys()]);
    const plans = new Map<string, PodPlan>();
    // a few pods at a time: on a small node, 30 pods started all at once all finish last
    const queue = [...uids];
    const worker = async (): Promise<void> => {
      for (let uid = queue.shift(); uid !== undefined; uid = queue.shift())
        await this.syncPod(uid, observed, plans);
    };
    await Promise.all(Array.from({ length: this.o.podConcurrency }, worker));
    this.syncProbers(observed);
    // statuses of pods not reported by syncPod (probe changes, nothing to do)
    await this.reportStatuses(observed, plans);
  }

  /**
   * Brings one pod as far as it can go now: plan, act, look again (this pod only), until nothing is
   * left to do or nothing progresses; then reports its status right away, so one slow pod never
   * holds back the others' status.
   */
  private async syncPod(
    uid: string,
    observed: Map<string, ObservedPod>,
    plans: Map<string, PodPlan>,
  ): Promise<void> {
    if (this.terminating.has(uid)) return;
    const pod = this.pods.get(uid);
    let obs = observed.get(uid) ?? { uid, sandboxes: [], containers: [] };
    // sandbox, then containers: a new pod needs two rounds; a bound on rounds guards against loops
    for (let round = 0; round < 3; round++) {
      const plan = planPod(pod, obs, Date.now(), this.o.backoff);
      plans.set(uid, plan);
      if (!pod || pod.metadata?.deletionTimestamp) {
        if (plan.actions.length) {
          this.teardownInBackground(uid, pod, plan.actions);
        } else if (pod && !this.reportedTerminated.has(uid)) {
          this.reportedTerminated.add(uid);
          await this.o.sink.podTerminated(pod).catch((err: Error) => {
            this.reportedTerminated.delete(uid);
            this.emit({ kind: "error", pod: uid, message: `reporting termination: ${err.message}` });
          });
        }
        return;
      }
      if (plan.actions.length === 0) break;
      let progressed = false;
      for (const action of plan.actions) {
        try {
          if ((await this.execute(pod, obs, action)) !== false) progressed = true;
        } catch (err) {
          this.emit({ kind: "error", pod: uid, message: `${action.kind}: ${(err as Error).message}` });
          break;
        }
      }
      // failures wait for the periodic resync rather than spinning
      if (!progressed) break;
      obs = (await this.observe({ ...MANAGED, [POD_UID]: uid })).get(uid) ?? {
        uid,
        sandboxes: [],
        containers: [],
      };
      observed.set(uid, obs);
    }
    if (pod && currentSandbox(obs)?.state === "SANDBOX_READY") this.refresher.maybeRefresh(pod);
    const plan = plans.get(uid);
    if (plan?.nextSyncAt) this.nextSyncAt = Math.min(this.nextSyncAt ?? Infinity, plan.nextSyncAt);
    await this.reportStatus(uid, pod, obs, plan);
  }

  private teardownInBackground(uid: string, pod: V1Pod | undefined, actions: PodAction[]): void {
    const work = (async () => {
      for (const action of actions) {
        try {
          await this.execute(pod, undefined, action);
        } catch (err) {
          this.emit({ kind: "error", pod: uid, message: `${action.kind}: ${(err as Error).message}` });
        }
      }
    })().finally(() => {
      this.terminating.delete(uid);
      this.requestSync();
    });
    this.terminating.set(uid, work);
  }

  private label(pod: V1Pod | undefined, fallback = ""): string {
    return pod ? `${pod.metadata?.namespace}/${pod.metadata?.name}` : fallback;
  }

  /** Runs one action; false when it could not make progress (e.g. the image cannot be pulled). */
  private async execute(
    pod: V1Pod | undefined,
    obs: ObservedPod | undefined,
    action: PodAction,
  ): Promise<boolean | void> {
    const cri = this.o.cri;
    this.emit({ kind: "action", pod: this.label(pod), action });
    const ignoreGone = (err: unknown): void => {
      if (!isNotFound(err)) throw err;
    };
    switch (action.kind) {
      case "runSandbox": {
        const cfg = sandboxConfig(pod!, action.attempt, this.sandboxOptions());
        await mkdir(cfg.logDirectory, { recursive: true });
        await cri.runPodSandbox(cfg);
        return;
      }
      case "createContainer":
        return this.createContainer(pod!, obs!, action);
      case "startCreated":
        await cri.startContainer(action.id);
        return;
      case "stopContainer":
        await cri.stopContainer(action.id, action.graceSeconds).catch(ignoreGone);
        return;
      case "removeContainer":
        this.probers.get(action.id)?.stop();
        this.probers.delete(action.id);
        await cri.removeContainer(action.id).catch(ignoreGone);
        return;
      case "stopSandbox":
        await cri.stopPodSandbox(action.id).catch(ignoreGone);
        return;
      case "removeSandbox":
        await cri.removePodSandbox(action.id).catch(ignoreGone);
        this.sandboxIPs.delete(action.id);
        return;
      case "removePodCgroup": {
        const left = await removePodCgroup(this.o.cgroupRoot, action.uid);
        if (left.length)
          this.emit({ kind: "error", pod: action.uid, message: `cgroups left: ${left.join(", ")}` });
        return;
      }
      case "removePodVolumes":
        await this.volumes.tearDown(action.uid);
        this.volumeWarnings.delete(action.uid);
        this.refresher.forget(action.uid);
        return;
    }
  }

  private sandboxOptions(): SandboxOptions {
    return {
      cgroupRoot: this.o.cgroupRoot,
      logRoot: this.o.logRoot,
      ...(this.o.dns ? { dns: this.o.dns } : {}),
    };
  }

  private setWaiting(uid: string, name: string, w: { reason: string; message: string } | undefined): void {
    const m = this.waiting.get(uid) ?? {};
    if (w) m[name] = w;
    else delete m[name];
    this.waiting.set(uid, m);
  }

  private async createContainer(
    pod: V1Pod,
    obs: ObservedPod,
    action: Extract<PodAction, { kind: "createContainer" }>,
  ): Promise<boolean> {
    const cri = this.o.cri;
    const uid = pod.metadata!.uid!;
    const spec = [...(pod.spec!.initContainers ?? []), ...pod.spec!.containers].find(
      (c) => c.name === action.name,
    )!;
    const image = spec.image ?? "";
    const sandbox = obs.sandboxes.find((s) => s.id === action.sandboxId)!;
    // image present? pull unless the policy forbids it
    if (!(await cri.imageStatus(image))) {
      if (spec.imagePullPolicy === "Never") {
        this.setWaiting(uid, spec.name, {
          reason: "ErrImageNeverPull",
          message: `image "${image}" is not present with pull policy of Never`,
        });
        return false;
      }
      try {
        await cri.pullImage(image);
      } catch (err) {
        this.setWaiting(uid, spec.name, { reason: "ErrImagePull", message: (err as Error).message });
        return false;
      }
    }
    const sbCfg = sandboxConfig(pod, sandbox.attempt, this.sandboxOptions());
    const facts = {
      podIP: sandbox.ip ?? "",
      nodeName: this.o.nodeName,
      ...(this.o.hostIP ? { hostIP: this.o.hostIP } : {}),
    };
    // volumes, ConfigMaps/Secrets and env: a user error leaves the container waiting, like kubelet
    const prepared = await prepareContainer(pod, spec, action.attempt, this.services, facts, {
      volumes: this.volumes,
      ...(this.o.objects ? { objects: this.o.objects } : {}),
    });
    if (prepared.waiting) {
      this.setWaiting(uid, spec.name, prepared.waiting);
      return false;
    }
    if (prepared.warnings.length) this.volumeWarnings.set(uid, prepared.warnings);
    const cfg = prepared.config!;
    await mkdir(join(sbCfg.logDirectory, spec.name), { recursive: true });
    let id: string;
    try {
      id = await cri.createContainer(action.sandboxId, cfg, sbCfg);
    } catch (err) {
      this.setWaiting(uid, spec.name, { reason: "CreateContainerError", message: (err as Error).message });
      throw err;
    }
    this.setWaiting(uid, spec.name, undefined);
    // a start failure leaves the container exited (StartError): the restart policy takes it from there
    await cri
      .startContainer(id)
      .catch((err: Error) =>
        this.emit({ kind: "error", pod: uid, message: `start ${spec.name}: ${err.message}` }),
      );
    return true;
  }

  /** One prober per running container that has probes; probers of gone containers stop. */
  private syncProbers(observed: Map<string, ObservedPod>): void {
    const wanted = new Set<string>();
    for (const [uid, obs] of observed) {
      const pod = this.pods.get(uid);
      if (!pod || pod.metadata?.deletionTimestamp) continue;
      const sandbox = currentSandbox(obs);
      for (const c of obs.containers) {
        if (c.state !== "CONTAINER_RUNNING" || c.sandboxId !== sandbox?.id) continue;
        const spec = pod.spec?.containers.find((s) => s.name === c.name);
        if (!spec || !(spec.livenessProbe || spec.readinessProbe || spec.startupProbe)) continue;
        wanted.add(c.id);
        if (this.probers.has(c.id) || this.unhealthy.has(c.id)) continue;
        const prober = new ContainerProber(
          { containerId: c.id, podIP: sandbox.ip ?? "", container: spec },
          this.o.cri,
          {
            changed: () => this.requestSync(),
            unhealthy: (id, which) => this.restartUnhealthy(pod, c, id, which),
          },
          this.o.probeSecondMs,
        );
        this.probers.set(c.id, prober);
        prober.start();
      }
    }
    for (const id of this.unhealthy) if (!wanted.has(id)) this.unhealthy.delete(id);
    for (const [id, p] of this.probers) {
      if (!wanted.has(id)) {
        p.stop();
        this.probers.delete(id);
      }
    }
  }

  private restartUnhealthy(
    pod: V1Pod,
    c: ObservedContainer,
    id: string,
    which: "liveness" | "startup",
  ): void {
    this.unhealthy.add(id);
    this.emit({ kind: "unhealthy", pod: this.label(pod), container: c.name, probe: which });
    // kill it; the restart policy decides what comes next
    void this.o.cri
      .stopContainer(id, gracePeriodSeconds(pod))
      .catch((err: Error) =>
        this.emit({ kind: "error", pod: this.label(pod), message: `stop unhealthy: ${err.message}` }),
      )
      .finally(() => this.requestSync());
  }

  private probeResults(): Record<string, ProbeResult> {
    const out: Record<string, ProbeResult> = {};
    for (const [id, p] of this.probers) out[id] = { ...p.result };
    return out;
  }

  private async reportStatuses(
    observed: Map<string, ObservedPod>,
    plans: Map<string, PodPlan>,
  ): Promise<void> {
    for (const [uid, pod] of this.pods) {
      await this.reportStatus(
        uid,
        pod,
        observed.get(uid) ?? { uid, sandboxes: [], containers: [] },
        plans.get(uid),
      );
    }
    for (const uid of this.lastStatus.keys()) {
      if (!this.pods.has(uid)) {
        this.lastStatus.delete(uid);
        this.sent.delete(uid);
        this.waiting.delete(uid);
      }
    }
    for (const uid of this.reportedTerminated) {
      if (!this.pods.has(uid)) {
        this.reportedTerminated.delete(uid);
      }
    }
  }

  /** Computes the pod's status and sends it if it changed since the last one sent. */
  private async reportStatus(
    uid: string,
    pod: V1Pod | undefined,
    obs: ObservedPod,
    plan: PodPlan | undefined,
  ): Promise<void> {
    if (!pod || pod.metadata?.deletionTimestamp) return;
    const status = computePodStatus(pod, {
      observed: obs,
      probes: this.probeResults(),
      backingOff: plan?.backingOff ?? {},
      waiting: this.waiting.get(uid) ?? {},
      warnings: this.volumeWarnings.get(uid) ?? [],
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
