/**
 * The ClusterRole aggregation controller (kube-controller-manager's clusterrole-aggregation):
 * the `rules` of every ClusterRole with an `aggregationRule` are written as the union of the
 * rules of the ClusterRoles its selectors match, so `kubectl get clusterrole edit -o yaml` shows
 * what `edit` grants. (The authorizer resolves aggregation itself, so it never waits on this.)
 * Keys are ClusterRole names.
 */
import type { V1ClusterRole } from "@kubernetes/client-node";
import { runController } from "../../api/controller.ts";
import type { Informer } from "../../api/informer.ts";
import { WorkQueue } from "../../api/workqueue.ts";
import { stableStringify } from "../../lib/stable-json.ts";
import type { ObjectWriter } from "../loop-client.ts";
import { isConflict, isNotFound } from "../loop-client.ts";
import { effectiveRules, type RoleObject } from "../rbac/rules.ts";

export class ClusterRoleAggregationController {
  readonly queue = new WorkQueue({ baseDelayMs: 50, maxDelayMs: 30_000 });

  constructor(
    private readonly roles: Informer<V1ClusterRole>,
    private readonly w: ObjectWriter,
    private readonly onError?: (err: unknown) => void,
  ) {
    // Any change may change what an aggregated role selects: look at every aggregated one.
    const all = (): void => {
      for (const name of this.aggregated()) this.queue.add(name);
    };
    roles.on({ add: all, update: all, delete: all });
  }

  private aggregated(): string[] {
    return [...this.roles.cache.values()]
      .filter((r) => r.aggregationRule)
      .map((r) => r.metadata?.name ?? "")
      .filter(Boolean);
  }

  run(signal: AbortSignal): Promise<void> {
    return runController(signal, {
      queue: this.queue,
      reconcile: (k) => this.reconcile(k),
      initialKeys: this.aggregated(),
      onError: this.onError,
    });
  }

  async reconcile(name: string): Promise<void> {
    const role = this.roles.get(name);
    if (!role?.aggregationRule) return;
    const all = [...this.roles.cache.values()] as unknown as RoleObject[];
    const want = effectiveRules(role as unknown as RoleObject, all);
    if (stableStringify(want) === stableStringify(role.rules ?? [])) return;
    try {
      await this.w.update<V1ClusterRole>("clusterroles", undefined, {
        ...role,
        rules: want as V1ClusterRole["rules"],
      });
    } catch (err) {
      // Cache behind (the watch event requeues us) or the role is gone.
      if (isConflict(err)) return this.queue.addAfter(name, 200);
      if (isNotFound(err)) return;
      throw err;
    }
  }
}
