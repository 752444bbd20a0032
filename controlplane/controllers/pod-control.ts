/**
 * Creating and deleting the pods of one owner, as upstream's PodControl with the controller's
 * expectations: an event per pod created or deleted, one FailedCreate for the first refusal (which
 * is then thrown), and the expectations told of each creation or deletion that will never be observed.
 * Used by the Job and DaemonSet controllers.
 */
import type { KubernetesObject, V1Pod } from "@kubernetes/client-node";
import type { Informer } from "../../api/informer.ts";
import { objectKey } from "../../api/informer.ts";
import type { ObjectWriter } from "../loop-client.ts";
import { isNotFound, recordEvent } from "../loop-client.ts";
import type { Expectations } from "./expectations.ts";

export interface PodControl {
  w: ObjectWriter;
  source: string;
  expectations: Expectations;
  pods: Informer<V1Pod>;
}

/** An Event about `owner` from the controller behind `c`. */
function ownerEvent(
  c: PodControl,
  owner: KubernetesObject,
  type: "Normal" | "Warning",
  reason: string,
  message: string,
): Promise<void> {
  return recordEvent(c.w, c.source, owner, type, reason, message);
}

/** Creates `pods` in `ns` for `owner` (whose key is `key`); the expectations are already set. */
export async function createOwnedPods(
  c: PodControl,
  owner: KubernetesObject,
  key: string,
  ns: string,
  pods: V1Pod[],
): Promise<void> {
  const results = await Promise.allSettled(pods.map((p) => c.w.create<V1Pod>("pods", ns, p)));
  let failure: unknown;
  for (const [i, r] of results.entries()) {
    if (r.status === "fulfilled")
      await ownerEvent(c, owner, "Normal", "SuccessfulCreate", `Created pod: ${pods[i]!.metadata!.name}`);
    else {
      c.expectations.creationFailed(key);
      failure ??= r.reason;
    }
  }
  if (failure) {
    await ownerEvent(
      c,
      owner,
      "Warning",
      "FailedCreate",
      `Error creating: ${String((failure as Error).message ?? failure)}`,
    );
    throw failure;
  }
}

/** Deletes `pods` (each by its uid) of `owner`, expecting their deletions under `key`. */
export async function deleteOwnedPods(
  c: PodControl,
  owner: KubernetesObject,
  key: string,
  pods: V1Pod[],
): Promise<void> {
  c.expectations.expect(key, 0, pods.map(objectKey));
  const results = await Promise.allSettled(
    pods.map((p) =>
      c.w.delete("pods", p.metadata?.namespace, p.metadata?.name ?? "", { uid: p.metadata?.uid }),
    ),
  );
  for (const [i, r] of results.entries()) {
    if (r.status === "rejected" || !c.pods.get(objectKey(pods[i]!)))
      c.expectations.deletionObserved(key, objectKey(pods[i]!));
    if (r.status === "fulfilled")
      await ownerEvent(c, owner, "Normal", "SuccessfulDelete", `Deleted pod: ${pods[i]!.metadata!.name}`);
  }
  const failed = results.find((r) => r.status === "rejected" && !isNotFound(r.reason));
  if (failed) throw (failed as PromiseRejectedResult).reason;
}
