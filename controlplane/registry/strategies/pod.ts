import { applyDefaults } from "../../../api/defaults.ts";
import { invalid } from "../../../api/status.ts";
import { stableStringify } from "../../../lib/stable-json.ts";
import { Strategy } from "../strategy.ts";
import type { DeleteOptions, KObject, UpdateMode } from "../types.ts";

type Obj = Record<string, unknown>;

const IMMUTABLE_MESSAGE =
  "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds` or `spec.tolerations` (only additions to existing tolerations)";

/** The parts of a pod spec an update may not change: all but images, deadline and tolerations. */
function fixedPart(spec: unknown): Obj {
  const s = structuredClone((spec ?? {}) as Obj);
  for (const list of ["containers", "initContainers"])
    for (const c of (s[list] as Obj[] | undefined) ?? []) if (c && typeof c === "object") delete c.image;
  delete s.activeDeadlineSeconds;
  delete s.tolerations;
  return s;
}

/** Pods: status is the kubelet's, the spec is fixed once created, deletion is graceful. */
export class PodStrategy extends Strategy {
  override prepareForCreate(obj: KObject): void {
    // A new pod's status is the node agent's to write.
    obj.status = {};
  }

  override prepareForUpdate(obj: KObject, old: KObject, mode: UpdateMode): void {
    if (mode === "status") return;
    // nodeName is set once, through the binding subresource, never by a plain update.
    const next = structuredClone((obj.spec ?? {}) as Obj);
    applyDefaults("Pod", { spec: next });
    const before = fixedPart(old.spec);
    if (mode === "binding" && !before.nodeName) before.nodeName = next.nodeName;
    if (stableStringify(before) !== stableStringify(fixedPart(next))) {
      throw invalid("Pod", old.metadata.name!, [
        { field: "spec", reason: "FieldValueForbidden", message: IMMUTABLE_MESSAGE },
      ]);
    }
  }

  override gracePeriod(obj: KObject, opts: DeleteOptions): number | "unchanged" {
    const spec = (obj.spec ?? {}) as Obj;
    const status = (obj.status ?? {}) as Obj;
    const grace = spec.terminationGracePeriodSeconds;
    let seconds = opts.gracePeriodSeconds ?? (typeof grace === "number" ? grace : 30);
    // An unscheduled pod has no containers to stop; and a terminated one has nothing left to stop.
    if (!spec.nodeName || status.phase === "Succeeded" || status.phase === "Failed") seconds = 0;
    const current = obj.metadata.deletionGracePeriodSeconds;
    if (current !== undefined && seconds >= current) return "unchanged";
    return seconds;
  }

  override waitsAfterFinalizers(old: KObject): boolean {
    // The kubelet removes a terminating pod once its containers stopped (grace 0 delete).
    return !!old.metadata.deletionGracePeriodSeconds;
  }
}
