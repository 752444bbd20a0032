/**
 * pods/eviction (policy/v1 Eviction), as kube-apiserver's EvictionREST: a pod covered by a
 * PodDisruptionBudget is deleted only while the budget allows a disruption, and the budget's
 * disruptionsAllowed is spent (and the pod noted in status.disruptedPods) in the same step, by a
 * compare-and-swap on the budget, so two evictions racing for the last disruption cannot both win.
 * Otherwise 429 TooManyRequests with upstream's message; `kubectl drain` retries on it.
 */
import type { V1Pod, V1PodDisruptionBudget } from "@kubernetes/client-node";
import { findResource } from "../../../api/resources.ts";
import { matchesLabels, selectorObjectToRequirements, type SelectorObject } from "../../../api/selectors.ts";
import { ApiError, badRequest } from "../../../api/status.ts";
import { podReady } from "../../disruption/budget.ts";
import type { DeleteOptions, KObject, Registry } from "../../registry.ts";
import { isObject } from "../body.ts";
import { success } from "../reply.ts";

const PODS = findResource("", "v1", "pods")!;
const PDBS = findResource("policy", "v1", "poddisruptionbudgets")!;

export const EVICTION_VIOLATES_BUDGET = "Cannot evict pod as it would violate the pod's disruption budget.";

function tooManyRequests(causeMessage: string): ApiError {
  const err = new ApiError(429, "TooManyRequests", EVICTION_VIOLATES_BUDGET, {
    causes: [{ reason: "DisruptionBudget", message: causeMessage }],
  });
  (err.details as Record<string, unknown>).retryAfterSeconds = 0;
  return err;
}

/** DeleteOptions carried by the Eviction body. */
function deleteOptionsOf(eviction: KObject, dryRun: boolean): DeleteOptions {
  const d = isObject(eviction.deleteOptions) ? eviction.deleteOptions : {};
  const opts: DeleteOptions = { dryRun };
  if (typeof d.gracePeriodSeconds === "number") opts.gracePeriodSeconds = d.gracePeriodSeconds;
  if (isObject(d.preconditions)) opts.preconditions = d.preconditions as DeleteOptions["preconditions"];
  return opts;
}

/** Pods a budget need not protect: done, not started, or already going. */
function canIgnoreBudget(pod: V1Pod): boolean {
  const phase = pod.status?.phase;
  return (
    phase === "Succeeded" ||
    phase === "Failed" ||
    phase === "Pending" ||
    pod.metadata?.deletionTimestamp !== undefined
  );
}

export async function evict(
  registry: Registry,
  namespace: string,
  name: string,
  eviction: KObject,
  dryRun: boolean,
): Promise<Record<string, unknown>> {
  if (eviction.metadata.name !== undefined && eviction.metadata.name !== name)
    throw badRequest(`name in URL does not match name in Eviction object`);
  const opts = deleteOptionsOf(eviction, dryRun);
  const pod = (await registry.get(PODS, namespace, name)) as V1Pod & KObject;
  const done = async (): Promise<Record<string, unknown>> => {
    await registry.delete(PODS, namespace, name, {
      ...opts,
      preconditions: { uid: pod.metadata.uid, ...opts.preconditions },
    });
    return success(201);
  };
  if (canIgnoreBudget(pod)) return done();
  const labels = pod.metadata.labels ?? {};
  const budgets = (await registry.list(PDBS, namespace, { labels: [], fields: [] })).items.filter((b) =>
    matchesLabels(selectorObjectToRequirements((b.spec as { selector?: SelectorObject })?.selector), labels),
  );
  if (budgets.length === 0) return done();
  if (budgets.length > 1)
    throw new ApiError(
      500,
      "InternalError",
      "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
    );
  const budgetName = budgets[0]!.metadata.name!;
  await registry.guaranteedUpdate(
    PDBS,
    namespace,
    budgetName,
    (b) => {
      const pdb = b as V1PodDisruptionBudget & KObject;
      const st = pdb.status ?? {
        currentHealthy: 0,
        desiredHealthy: 0,
        disruptionsAllowed: 0,
        expectedPods: 0,
      };
      // An unready pod does not count as healthy: with the budget met it may go without spending it.
      if (
        !podReady(pod) &&
        (pdb.spec?.unhealthyPodEvictionPolicy === "AlwaysAllow" || st.currentHealthy >= st.desiredHealthy)
      ) {
        return b;
      }
      if ((st.observedGeneration ?? 0) < (pdb.metadata.generation ?? 0))
        throw tooManyRequests(`The disruption budget ${budgetName} is still being processed by the server.`);
      if (st.disruptionsAllowed < 0)
        throw new ApiError(403, "Forbidden", "pdb disruptions allowed is negative");
      if (st.disruptionsAllowed === 0)
        throw tooManyRequests(
          `The disruption budget ${budgetName} needs ${st.desiredHealthy} healthy pods and has ${st.currentHealthy} currently`,
        );
      pdb.status = {
        ...st,
        disruptionsAllowed: st.disruptionsAllowed - 1,
        disruptedPods: {
          ...(st.disruptedPods ?? {}),
          [name]: new Date().toISOString().replace(/\.\d+Z$/, "Z") as unknown as Date,
        },
      };
      return pdb;
    },
    { mode: "status", dryRun },
  );
  return done();
}
