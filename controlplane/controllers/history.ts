/**
 * ControllerRevisions of DaemonSets and StatefulSets (pkg/controller/history): one per distinct pod
 * template, named OWNER-HASH, labelled with the owner's selector labels and the hash, owned by the
 * owner, its `data` the strategic merge patch `kubectl rollout undo` applies
 * (`{"spec":{"template":{..., "$patch":"replace"}}}`). A template seen before (a rollback) gets
 * its old revision renumbered to the newest instead of a copy.
 */
import type { V1ControllerRevision, V1PodTemplateSpec } from "@kubernetes/client-node";
import type { ObjectWriter } from "../loop-client.ts";
import { isConflict, isNotFound } from "../loop-client.ts";
import { controllerRef, ownerRefFor } from "./labels.ts";
import { podTemplateHash, templatesEqualIgnoringHash } from "./pod-template.ts";

export const REVISION_HASH_LABEL = "controller-revision-hash";

interface Owner {
  apiVersion: string;
  kind: string;
  metadata?: { name?: string; namespace?: string; uid?: string };
  spec?: {
    template?: V1PodTemplateSpec;
    selector?: { matchLabels?: Record<string, string> };
    revisionHistoryLimit?: number;
  };
}

/** The pod template a revision holds. */
export function revisionTemplate(r: V1ControllerRevision): V1PodTemplateSpec | undefined {
  const t = (r.data as { spec?: { template?: V1PodTemplateSpec & { $patch?: string } } } | undefined)?.spec
    ?.template;
  if (!t) return undefined;
  const copy = structuredClone(t);
  delete copy.$patch;
  return copy;
}

export function ownedRevisions(all: V1ControllerRevision[], uid: string | undefined): V1ControllerRevision[] {
  return all
    .filter((r) => controllerRef(r)?.uid === uid)
    .sort((a, b) => (a.revision ?? 0) - (b.revision ?? 0));
}

/**
 * The revision of the owner's current template, created or renumbered as needed. `revisions` are
 * the owner's, oldest first.
 */
export async function currentRevision(
  w: ObjectWriter,
  owner: Owner,
  revisions: V1ControllerRevision[],
): Promise<V1ControllerRevision> {
  const ns = owner.metadata?.namespace ?? "default";
  const template = owner.spec?.template;
  const max = revisions.reduce((m, r) => Math.max(m, r.revision ?? 0), 0);
  const same = revisions.filter((r) => templatesEqualIgnoringHash(revisionTemplate(r), template));
  const existing = same[same.length - 1];
  if (existing) {
    if ((existing.revision ?? 0) === max) return existing;
    return w.update<V1ControllerRevision>("controllerrevisions", ns, { ...existing, revision: max + 1 });
  }
  for (let collision = 0; ; collision++) {
    const hash = podTemplateHash(template, collision);
    const tpl = structuredClone(template ?? {}) as V1PodTemplateSpec & { $patch?: string };
    tpl.$patch = "replace";
    const rev: V1ControllerRevision = {
      apiVersion: "apps/v1",
      kind: "ControllerRevision",
      metadata: {
        name: `${owner.metadata?.name}-${hash}`,
        namespace: ns,
        labels: { ...(owner.spec?.selector?.matchLabels ?? {}), [REVISION_HASH_LABEL]: hash },
        ownerReferences: [ownerRefFor(owner, owner.apiVersion, owner.kind)],
      },
      data: { spec: { template: tpl } },
      revision: max + 1,
    };
    try {
      return await w.create<V1ControllerRevision>("controllerrevisions", ns, rev);
    } catch (err) {
      if (!isConflict(err)) throw err;
      const found = await w.get<V1ControllerRevision>("controllerrevisions", ns, rev.metadata!.name!);
      if (
        found &&
        controllerRef(found)?.uid === owner.metadata?.uid &&
        templatesEqualIgnoringHash(revisionTemplate(found), template)
      )
        return found;
      if (collision > 5) throw err;
    }
  }
}

/** The hash part of a revision's name (`web-5d8f7c9b6` → `5d8f7c9b6`). */
export function revisionHash(r: V1ControllerRevision): string {
  return r.metadata?.labels?.[REVISION_HASH_LABEL] ?? (r.metadata?.name ?? "").split("-").pop() ?? "";
}

/** Deletes the oldest revisions beyond revisionHistoryLimit that no live pod and no `keep` uses. */
export async function truncateHistory(
  w: ObjectWriter,
  owner: Owner,
  revisions: V1ControllerRevision[],
  inUse: Set<string>,
): Promise<void> {
  const limit = owner.spec?.revisionHistoryLimit ?? 10;
  const old = revisions.filter((r) => !inUse.has(r.metadata?.name ?? ""));
  for (const r of old.slice(0, Math.max(0, old.length - limit))) {
    try {
      await w.delete("controllerrevisions", r.metadata?.namespace, r.metadata?.name ?? "", {
        uid: r.metadata?.uid,
      });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}
