import type { V1StatusCause } from "@kubernetes/client-node";
import { matchesLabels, selectorObjectToRequirements, type SelectorObject } from "../selectors.ts";
import { obj, validatePodSpec } from "./core.ts";
import { FieldPath, forbidden, immutable, invalidValue, notSupported, required } from "./field.ts";
import { isQualifiedName, isValidLabelValue } from "./names.ts";

/** Deployment and ReplicaSet rules (pkg/apis/apps/validation). */

type Obj = Record<string, unknown>;
const SPEC = FieldPath.root("spec");
const OPERATORS = ["In", "NotIn", "Exists", "DoesNotExist"];

function nonNegative(spec: Obj, field: string, causes: V1StatusCause[]): void {
  const v = spec[field];
  if (typeof v === "number" && v < 0)
    causes.push(invalidValue(SPEC.child(field), v, "must be greater than or equal to 0"));
}

export function validateSelector(sel: Obj, path: FieldPath, kind: string, causes: V1StatusCause[]): boolean {
  const before = causes.length;
  const labels = obj(sel.matchLabels) ?? {};
  const exprs = Array.isArray(sel.matchExpressions) ? (sel.matchExpressions as unknown[]) : [];
  for (const [k, v] of Object.entries(labels)) {
    for (const m of isQualifiedName(k)) causes.push(invalidValue(path.child("matchLabels"), k, m));
    if (typeof v === "string")
      for (const m of isValidLabelValue(v)) causes.push(invalidValue(path.child("matchLabels"), v, m));
  }
  exprs.forEach((raw, i) => {
    const e = obj(raw) ?? {};
    const p = path.child("matchExpressions").index(i);
    const op = String(e.operator);
    const values = Array.isArray(e.values) ? e.values : [];
    if (!OPERATORS.includes(op)) causes.push(notSupported(p.child("operator"), e.operator, OPERATORS));
    else if ((op === "In" || op === "NotIn") && values.length === 0)
      causes.push(required(p.child("values"), "must be specified when `operator` is 'In' or 'NotIn'"));
    else if ((op === "Exists" || op === "DoesNotExist") && values.length > 0)
      causes.push(
        forbidden(p.child("values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"),
      );
  });
  if (Object.keys(labels).length + exprs.length === 0)
    causes.push(invalidValue(path, sel, `empty selector is invalid for ${kind.toLowerCase()}`));
  return causes.length === before;
}

/** A Deployment's or ReplicaSet's spec: selector, template, counts, strategy. */
export function validateWorkloadSpec(kind: string, spec: unknown, causes: V1StatusCause[]): void {
  const s = obj(spec);
  if (!s) {
    causes.push(required(SPEC));
    return;
  }
  nonNegative(s, "replicas", causes);
  nonNegative(s, "minReadySeconds", causes);
  nonNegative(s, "revisionHistoryLimit", causes);
  const template = obj(s.template);
  const sel = obj(s.selector);
  if (!sel) causes.push(required(SPEC.child("selector")));
  else if (validateSelector(sel, SPEC.child("selector"), kind, causes)) {
    const labels = (obj(obj(template?.metadata)?.labels) ?? {}) as Record<string, string>;
    if (!matchesLabels(selectorObjectToRequirements(sel as SelectorObject), labels))
      causes.push(
        invalidValue(
          SPEC.child("template").child("metadata").child("labels"),
          labels,
          "`selector` does not match template `labels`",
        ),
      );
  }
  const podSpec = obj(template?.spec);
  validatePodSpec(podSpec, SPEC.child("template").child("spec"), causes);
  if (podSpec && podSpec.restartPolicy !== undefined && podSpec.restartPolicy !== "Always")
    causes.push(
      notSupported(SPEC.child("template").child("spec").child("restartPolicy"), podSpec.restartPolicy, [
        "Always",
      ]),
    );
  if (kind !== "Deployment") return;
  const strategy = obj(s.strategy);
  const type = strategy?.type;
  if (type !== undefined && type !== "Recreate" && type !== "RollingUpdate")
    causes.push(notSupported(SPEC.child("strategy").child("type"), type, ["Recreate", "RollingUpdate"]));
  if (type === "Recreate" && strategy?.rollingUpdate !== undefined)
    causes.push(
      forbidden(
        SPEC.child("strategy").child("rollingUpdate"),
        "may not be specified when strategy `type` is 'Recreate'",
      ),
    );
  const deadline = s.progressDeadlineSeconds;
  const minReady = typeof s.minReadySeconds === "number" ? s.minReadySeconds : 0;
  if (typeof deadline === "number" && deadline <= minReady)
    causes.push(
      invalidValue(SPEC.child("progressDeadlineSeconds"), deadline, "must be greater than minReadySeconds"),
    );
}

/** apps/v1 selectors never change after creation. */
export function validateWorkloadUpdate(next: Obj, old: Obj, causes: V1StatusCause[]): void {
  causes.push(...immutable(SPEC.child("selector"), obj(next.spec)?.selector, obj(old.spec)?.selector));
}
