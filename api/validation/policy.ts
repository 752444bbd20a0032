import type { V1StatusCause } from "@kubernetes/client-node";
import { obj } from "./core.ts";
import { FieldPath, invalidValue, notSupported, required } from "./field.ts";
import { isQualifiedName, isValidLabelValue } from "./names.ts";

/**
 * PodDisruptionBudget (pkg/apis/policy/validation) and HorizontalPodAutoscaler autoscaling/v2
 * (pkg/apis/autoscaling/validation) rules, with upstream's field paths and messages.
 */

type Obj = Record<string, unknown>;
const SPEC = FieldPath.root("spec");
const OPERATORS = ["In", "NotIn", "Exists", "DoesNotExist"];

/** An int or "N%" that is not negative and not over 100% (ValidatePositiveIntOrPercent + IsNotMoreThan100Percent). */
function validateIntOrPercent(v: unknown, path: FieldPath, causes: V1StatusCause[]): void {
  if (v === undefined || v === null) return;
  if (typeof v === "number") {
    if (v < 0) causes.push(invalidValue(path, v, "must be greater than or equal to 0"));
    return;
  }
  const m = typeof v === "string" ? /^(\d+)%$/.exec(v) : null;
  if (!m) {
    causes.push(invalidValue(path, v, "must be an integer or percentage (e.g '5%')"));
    return;
  }
  if (Number(m[1]) > 100) causes.push(invalidValue(path, v, "must not be greater than 100%"));
}

/** A LabelSelector's keys, values and operators (an empty selector is valid here: it selects every pod). */
export function validateLabelSelector(sel: unknown, path: FieldPath, causes: V1StatusCause[]): void {
  const s = obj(sel);
  if (!s) return;
  for (const [k, v] of Object.entries(obj(s.matchLabels) ?? {})) {
    for (const m of isQualifiedName(k)) causes.push(invalidValue(path.child("matchLabels"), k, m));
    if (typeof v === "string")
      for (const m of isValidLabelValue(v)) causes.push(invalidValue(path.child("matchLabels"), v, m));
  }
  const exprs = Array.isArray(s.matchExpressions) ? (s.matchExpressions as unknown[]) : [];
  exprs.forEach((raw, i) => {
    const e = obj(raw) ?? {};
    const p = path.child("matchExpressions").index(i);
    const values = Array.isArray(e.values) ? e.values : [];
    if (typeof e.key !== "string" || e.key === "") causes.push(required(p.child("key")));
    if (!OPERATORS.includes(String(e.operator)))
      causes.push(notSupported(p.child("operator"), e.operator, OPERATORS));
    else if ((e.operator === "In" || e.operator === "NotIn") && values.length === 0)
      causes.push(required(p.child("values"), "must be specified when `operator` is 'In' or 'NotIn'"));
    else if ((e.operator === "Exists" || e.operator === "DoesNotExist") && values.length > 0)
      causes.push({
        field: p.child("values").toString(),
        reason: "FieldValueForbidden",
        message: "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
      });
  });
}

export function validatePodDisruptionBudget(o: Obj, causes: V1StatusCause[]): void {
  const spec = obj(o.spec) ?? {};
  const hasMin = spec.minAvailable !== undefined && spec.minAvailable !== null;
  const hasMax = spec.maxUnavailable !== undefined && spec.maxUnavailable !== null;
  if (hasMin && hasMax)
    causes.push(invalidValue(SPEC, spec, "minAvailable and maxUnavailable cannot be both set"));
  validateIntOrPercent(spec.minAvailable, SPEC.child("minAvailable"), causes);
  validateIntOrPercent(spec.maxUnavailable, SPEC.child("maxUnavailable"), causes);
  validateLabelSelector(spec.selector, SPEC.child("selector"), causes);
  const policy = spec.unhealthyPodEvictionPolicy;
  if (policy !== undefined && policy !== null && policy !== "IfHealthyBudget" && policy !== "AlwaysAllow")
    causes.push(
      notSupported(SPEC.child("unhealthyPodEvictionPolicy"), policy, ["AlwaysAllow", "IfHealthyBudget"]),
    );
}

const METRIC_TYPES = ["ContainerResource", "External", "Object", "Pods", "Resource"];
const TARGET_TYPES = ["AverageValue", "Utilization", "Value"];
const POLICY_TYPES = ["Percent", "Pods"];
const SELECT_POLICIES = ["Disabled", "Max", "Min"];
/** Upstream's MaxPeriodSeconds and MaxStabilizationWindowSeconds. */
const MAX_PERIOD_SECONDS = 1800;
const MAX_WINDOW_SECONDS = 3600;

function validateTarget(t: unknown, path: FieldPath, causes: V1StatusCause[]): void {
  const target = obj(t);
  if (!target) {
    causes.push(required(path));
    return;
  }
  if (!TARGET_TYPES.includes(String(target.type)))
    causes.push(notSupported(path.child("type"), target.type, TARGET_TYPES));
  const util = target.averageUtilization;
  if (target.type === "Utilization" && (util === undefined || util === null))
    causes.push(
      required(
        path.child("averageUtilization"),
        "must set either a target raw value or a target utilization",
      ),
    );
  if (typeof util === "number" && util < 1)
    causes.push(invalidValue(path.child("averageUtilization"), util, "must be greater than 0"));
}

function validateMetric(m: Obj, path: FieldPath, causes: V1StatusCause[]): void {
  const type = m.type;
  if (!METRIC_TYPES.includes(String(type))) {
    causes.push(notSupported(path.child("type"), type, METRIC_TYPES));
    return;
  }
  const field = {
    Resource: "resource",
    ContainerResource: "containerResource",
    Pods: "pods",
    Object: "object",
    External: "external",
  }[type as string]!;
  const src = obj(m[field]);
  if (!src) {
    causes.push(required(path.child(field), `must populate information for the given metric source`));
    return;
  }
  if (type === "Resource" || type === "ContainerResource") {
    if (typeof src.name !== "string" || src.name === "")
      causes.push(required(path.child(field).child("name"), "must specify a resource name"));
    if (type === "ContainerResource" && (typeof src.container !== "string" || src.container === ""))
      causes.push(required(path.child(field).child("container"), "must specify a container"));
  } else if (!obj(obj(src.metric)) || typeof obj(src.metric)?.name !== "string")
    causes.push(required(path.child(field).child("metric").child("name"), "must specify a metric name"));
  validateTarget(src.target, path.child(field).child("target"), causes);
}

function validateRules(r: unknown, path: FieldPath, causes: V1StatusCause[]): void {
  const rules = obj(r);
  if (!rules) return;
  const w = rules.stabilizationWindowSeconds;
  if (typeof w === "number" && (w < 0 || w > MAX_WINDOW_SECONDS))
    causes.push(
      invalidValue(
        path.child("stabilizationWindowSeconds"),
        w,
        w < 0
          ? "must be greater than or equal to zero"
          : `must be less than or equal to ${MAX_WINDOW_SECONDS}`,
      ),
    );
  if (rules.selectPolicy !== undefined && !SELECT_POLICIES.includes(String(rules.selectPolicy)))
    causes.push(notSupported(path.child("selectPolicy"), rules.selectPolicy, SELECT_POLICIES));
  const policies = Array.isArray(rules.policies) ? rules.policies : [];
  if (rules.policies !== undefined && policies.length === 0)
    causes.push(required(path.child("policies"), "must specify at least one Policy"));
  policies.forEach((raw, i) => {
    const p = obj(raw) ?? {};
    const pp = path.child("policies").index(i);
    if (!POLICY_TYPES.includes(String(p.type)))
      causes.push(notSupported(pp.child("type"), p.type, POLICY_TYPES));
    if (typeof p.value !== "number" || p.value <= 0)
      causes.push(invalidValue(pp.child("value"), p.value, "must be greater than zero"));
    if (typeof p.periodSeconds !== "number" || p.periodSeconds <= 0 || p.periodSeconds > MAX_PERIOD_SECONDS)
      causes.push(
        invalidValue(
          pp.child("periodSeconds"),
          p.periodSeconds,
          typeof p.periodSeconds === "number" && p.periodSeconds > MAX_PERIOD_SECONDS
            ? `must be less than or equal to ${MAX_PERIOD_SECONDS}`
            : "must be greater than zero",
        ),
      );
  });
}

export function validateHorizontalPodAutoscaler(o: Obj, causes: V1StatusCause[]): void {
  const spec = obj(o.spec);
  if (!spec) {
    causes.push(required(SPEC));
    return;
  }
  const ref = obj(spec.scaleTargetRef);
  const refPath = SPEC.child("scaleTargetRef");
  if (!ref) causes.push(required(refPath));
  else {
    if (typeof ref.kind !== "string" || ref.kind === "") causes.push(required(refPath.child("kind")));
    if (typeof ref.name !== "string" || ref.name === "") causes.push(required(refPath.child("name")));
  }
  const min = spec.minReplicas;
  if (typeof min === "number" && min < 1)
    causes.push(invalidValue(SPEC.child("minReplicas"), min, "must be greater than or equal to 1"));
  const max = spec.maxReplicas;
  if (typeof max !== "number") causes.push(required(SPEC.child("maxReplicas")));
  else if (max < 1) causes.push(invalidValue(SPEC.child("maxReplicas"), max, "must be greater than 0"));
  else if (typeof min === "number" && max < min)
    causes.push(
      invalidValue(SPEC.child("maxReplicas"), max, "must be greater than or equal to `minReplicas`"),
    );
  const metrics = Array.isArray(spec.metrics) ? spec.metrics : [];
  metrics.forEach((m, i) => validateMetric(obj(m) ?? {}, SPEC.child("metrics").index(i), causes));
  const behavior = obj(spec.behavior);
  if (behavior) {
    validateRules(behavior.scaleUp, SPEC.child("behavior").child("scaleUp"), causes);
    validateRules(behavior.scaleDown, SPEC.child("behavior").child("scaleDown"), causes);
  }
}
