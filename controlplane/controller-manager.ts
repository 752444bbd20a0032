/**
 * Runs the control loops of lab-server behind leader election: the controller manager (ReplicaSet,
 * Deployment, Endpoints, node lifecycle, garbage collector, node IPAM) on the Lease
 * kube-system/kube-controller-manager, the scheduler on kube-system/kube-scheduler. Every master
 * runs both; one instance of each acts at a time. Informers are created afresh on every term of
 * leadership, so a new leader starts from a fresh list, never from a stale cache.
 */
import type {
  V1ControllerRevision,
  V1CronJob,
  V1DaemonSet,
  V1Job,
  V1ReplicationController,
  V1StatefulSet,
  V1Deployment,
  V1Endpoints,
  V1EndpointSlice,
  V1Lease,
  V1Namespace,
  V1Node,
  V1Pod,
  V1PodDisruptionBudget,
  V1ReplicaSet,
  V1Service,
  V2HorizontalPodAutoscaler,
  V1ServiceAccount,
  V1ClusterRole,
} from "@kubernetes/client-node";
import type { KubeObject } from "../api/informer.ts";
import { Informer } from "../api/informer.ts";
import type { LeaseStore } from "../api/leader-election.ts";
import { LeaderElector } from "../api/leader-election.ts";
import type { ListWatchFactory, ObjectWriter } from "./loop-client.ts";
import { DeploymentController } from "./controllers/deployment.ts";
import { DisruptionController } from "./controllers/disruption.ts";
import { HorizontalPodAutoscalerController } from "./controllers/hpa.ts";
import type { PodMetricsReader, ScaleClient } from "./controllers/scale-client.ts";
import { EndpointsController } from "./controllers/endpoints.ts";
import { EndpointSliceController } from "./controllers/endpointslices.ts";
import type { GcObject } from "./controllers/gc-decision.ts";
import { GarbageCollector } from "./controllers/garbage-collector.ts";
import { NodeIpamController } from "./controllers/node-ipam.ts";
import type { NodeLifecycleConfig } from "./controllers/node-lifecycle.ts";
import { NodeLifecycleController } from "./controllers/node-lifecycle.ts";
import { REPLICATION_CONTROLLER_KIND, ReplicaSetController } from "./controllers/replicaset.ts";
import { CronJobController, type CronClock } from "./controllers/cronjob.ts";
import { DaemonSetController } from "./controllers/daemonset.ts";
import { JobController, type JobControllerOptions } from "./controllers/job.ts";
import { StatefulSetController } from "./controllers/statefulset.ts";
import { ServiceAccountsController } from "./controllers/serviceaccounts.ts";
import { RootCaPublisher } from "./controllers/root-ca.ts";
import { ClusterRoleAggregationController } from "./controllers/clusterrole-aggregation.ts";
import { Scheduler } from "./scheduler/scheduler.ts";

export interface LoopsConfig {
  lw: ListWatchFactory;
  writer: ObjectWriter;
  leases: LeaseStore;
  /** Unique per process, e.g. `${hostname}_${pid}`. */
  identity: string;
  leaderElection?: { leaseDurationSeconds?: number; renewDeadlineMs?: number; retryPeriodMs?: number };
  nodeLifecycle?: NodeLifecycleConfig;
  /** Pod network to carve per-node CIDRs from; no IPAM without it. */
  clusterCidr?: string;
  nodeCidrMaskSize?: number;
  /** The Job controller's clock and first failure back-off (tests shorten them). */
  job?: JobControllerOptions;
  /** The CronJob controller's clock (tests run minutes in seconds). */
  cronClock?: CronClock;
  /** Any kind's scale subresource: the disruption and HPA controllers run only with it. */
  scales?: ScaleClient;
  /** metrics.k8s.io pod metrics: the HPA controller runs only with it (and scales). */
  podMetrics?: PodMetricsReader;
  /** The cluster CA (PEM) published as ConfigMap kube-root-ca.crt in every namespace; none without it. */
  rootCa?: string;
  /** How often each HPA is evaluated (upstream's --horizontal-pod-autoscaler-sync-period, 15 s). */
  hpaSyncPeriodMs?: number;
  /** Where loops report errors and leadership changes (the engine never prints). */
  onEvent?: (e: {
    component: string;
    kind: "leading" | "stopped" | "leader" | "error";
    detail?: string;
  }) => void;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Builds and runs every controller until `signal` aborts (one term of leadership). */
export async function runControllers(cfg: LoopsConfig, signal: AbortSignal): Promise<void> {
  const onError = (err: unknown): void =>
    cfg.onEvent?.({ component: "controller-manager", kind: "error", detail: errorText(err) });
  const inf = <T extends KubeObject>(resource: Parameters<ListWatchFactory>[0], ns?: string): Informer<T> =>
    new Informer<T>(cfg.lw<T>(resource, ns), { onError });
  const pods = inf<V1Pod>("pods");
  const nodes = inf<V1Node>("nodes");
  const leases = inf<V1Lease>("leases", "kube-node-lease");
  const replicaSets = inf<V1ReplicaSet>("replicasets");
  const deployments = inf<V1Deployment>("deployments");
  const services = inf<V1Service>("services");
  const endpoints = inf<V1Endpoints>("endpoints");
  const budgets = cfg.scales ? inf<V1PodDisruptionBudget>("poddisruptionbudgets") : undefined;
  const hpas =
    cfg.scales && cfg.podMetrics ? inf<V2HorizontalPodAutoscaler>("horizontalpodautoscalers") : undefined;
  const slices = inf<V1EndpointSlice>("endpointslices");
  // Workloads (issue 19).
  const jobs = inf<V1Job>("jobs");
  const cronJobs = inf<V1CronJob>("cronjobs");
  const daemonSets = inf<V1DaemonSet>("daemonsets");
  const statefulSets = inf<V1StatefulSet>("statefulsets");
  const revisions = inf<V1ControllerRevision>("controllerrevisions");
  const rcs = inf<V1ReplicationController>("replicationcontrollers");
  const workloads = [jobs, cronJobs, daemonSets, statefulSets, revisions, rcs];
  // Workload identity (issue 20): a `default` ServiceAccount in every namespace.
  const namespaces = inf<V1Namespace>("namespaces");
  const serviceAccounts = inf<V1ServiceAccount>("serviceaccounts");
  const clusterRoles = inf<V1ClusterRole>("clusterroles");
  const informers: Pick<Informer<KubeObject>, "run" | "waitForSync">[] = [
    pods,
    nodes,
    leases,
    replicaSets,
    deployments,
    services,
    endpoints,
    slices,
    ...workloads,
    namespaces,
    serviceAccounts,
    clusterRoles,
  ];
  if (budgets) informers.push(budgets);
  if (hpas) informers.push(hpas);
  const running = informers.map((i) => i.run(signal));
  await Promise.race([
    Promise.all(informers.map((i) => i.waitForSync())),
    new Promise((r) => signal.addEventListener("abort", r, { once: true })),
  ]);
  if (signal.aborted) {
    await Promise.all(running);
    return;
  }
  const w = cfg.writer;
  const loops: Promise<void>[] = [
    new ReplicaSetController(replicaSets, pods, w, onError).run(signal),
    new DeploymentController(deployments, replicaSets, w, onError).run(signal),
    new EndpointsController(services, pods, endpoints, w, onError).run(signal),
    new EndpointSliceController(services, endpoints, slices, w, onError).run(signal),
    new NodeLifecycleController(nodes, leases, pods, w, cfg.nodeLifecycle, onError).run(signal),
    new JobController(jobs, pods, w, onError, cfg.job).run(signal),
    new CronJobController(cronJobs, jobs, w, onError, cfg.cronClock).run(signal),
    new DaemonSetController(daemonSets, nodes, pods, revisions, w, onError).run(signal),
    new StatefulSetController(statefulSets, pods, revisions, w, onError).run(signal),
    new ServiceAccountsController(namespaces, serviceAccounts, w, onError).run(signal),
    new ClusterRoleAggregationController(clusterRoles, w, onError).run(signal),
    new ReplicaSetController(
      rcs as unknown as Informer<V1ReplicaSet>,
      pods,
      w,
      onError,
      REPLICATION_CONTROLLER_KIND,
    ).run(signal),
    new GarbageCollector(
      {
        Pod: { resource: "pods", informer: pods as Informer<GcObject & KubeObject> },
        ReplicaSet: { resource: "replicasets", informer: replicaSets as Informer<GcObject & KubeObject> },
        Deployment: { resource: "deployments", informer: deployments as Informer<GcObject & KubeObject> },
        Job: { resource: "jobs", informer: jobs as Informer<GcObject & KubeObject> },
        CronJob: { resource: "cronjobs", informer: cronJobs as Informer<GcObject & KubeObject> },
        DaemonSet: { resource: "daemonsets", informer: daemonSets as Informer<GcObject & KubeObject> },
        StatefulSet: { resource: "statefulsets", informer: statefulSets as Informer<GcObject & KubeObject> },
        ControllerRevision: {
          resource: "controllerrevisions",
          informer: revisions as unknown as Informer<GcObject & KubeObject>,
        },
        ReplicationController: {
          resource: "replicationcontrollers",
          informer: rcs as Informer<GcObject & KubeObject>,
        },
      },
      w,
      onError,
    ).run(signal),
  ];
  if (budgets && cfg.scales)
    loops.push(
      new DisruptionController(budgets, pods, replicaSets, deployments, w, cfg.scales, onError).run(signal),
    );
  if (hpas && cfg.scales && cfg.podMetrics)
    loops.push(
      new HorizontalPodAutoscalerController(
        hpas,
        pods,
        w,
        cfg.scales,
        cfg.podMetrics,
        onError,
        cfg.hpaSyncPeriodMs,
      ).run(signal),
    );
  if (cfg.rootCa) loops.push(new RootCaPublisher(namespaces, w, cfg.rootCa, onError).run(signal));
  if (cfg.clusterCidr)
    loops.push(new NodeIpamController(nodes, w, cfg.clusterCidr, cfg.nodeCidrMaskSize, onError).run(signal));
  await Promise.all([...loops, ...running]);
}

function elect(cfg: LoopsConfig, name: string, work: (signal: AbortSignal) => Promise<void>): LeaderElector {
  return new LeaderElector({
    ...cfg.leaderElection,
    store: cfg.leases,
    namespace: "kube-system",
    name,
    identity: cfg.identity,
    onStartedLeading: (s) => {
      cfg.onEvent?.({ component: name, kind: "leading" });
      return work(s);
    },
    onStoppedLeading: () => cfg.onEvent?.({ component: name, kind: "stopped" }),
    onNewLeader: (id) => cfg.onEvent?.({ component: name, kind: "leader", detail: id }),
    onError: (err) => cfg.onEvent?.({ component: name, kind: "error", detail: errorText(err) }),
  });
}

/** The controller manager, leader-elected. Resolves after `signal` aborts and the lease is released. */
export function runControllerManager(cfg: LoopsConfig, signal: AbortSignal): Promise<void> {
  return elect(cfg, "kube-controller-manager", (s) => runControllers(cfg, s)).run(signal);
}

/** The scheduler, leader-elected on its own lease. */
export function runScheduler(cfg: LoopsConfig, signal: AbortSignal): Promise<void> {
  const onError = (err: unknown): void =>
    cfg.onEvent?.({ component: "kube-scheduler", kind: "error", detail: errorText(err) });
  return elect(cfg, "kube-scheduler", (s) => new Scheduler(cfg.lw, cfg.writer, { onError }).run(s)).run(
    signal,
  );
}
