import type { ResourceInfo } from "../../../api/resources.ts";
import { Strategy, type StrategyContext } from "../strategy.ts";
import { NamespaceStrategy } from "./namespace.ts";
import { PodStrategy } from "./pod.ts";
import { RbacStrategy } from "./rbac.ts";
import { HorizontalPodAutoscalerStrategy, PodDisruptionBudgetStrategy } from "./policy.ts";
import { SecretStrategy } from "./secret.ts";
import { ServiceStrategy } from "./service.ts";
import { WorkloadStrategy } from "./workloads.ts";

/**
 * The strategy of each served kind. Kinds with nothing of their own (ConfigMap, Node, Event,
 * Endpoints, ServiceAccount, Lease, Deployment, ReplicaSet) use the base Strategy: defaults and
 * validation by kind (api/defaults.ts, api/validation.ts). A new kind is a line here (or a file
 * beside this one) plus a controller.
 */
export function strategyFor(info: ResourceInfo, ctx: StrategyContext): Strategy {
  switch (info.kind) {
    case "Pod":
      return new PodStrategy(info);
    case "Service":
      return new ServiceStrategy(info, ctx);
    case "Namespace":
      return new NamespaceStrategy(info);
    case "Secret":
      return new SecretStrategy(info);
    case "Job":
    case "CronJob":
    case "DaemonSet":
    case "StatefulSet":
    case "ReplicationController":
      return new WorkloadStrategy(info);
    case "PodDisruptionBudget":
      return new PodDisruptionBudgetStrategy(info);
    case "HorizontalPodAutoscaler":
      return new HorizontalPodAutoscalerStrategy(info);
    case "RoleBinding":
    case "ClusterRoleBinding":
      return new RbacStrategy(info);
    default:
      return new Strategy(info);
  }
}
