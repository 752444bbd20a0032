import type { V1StatusCause } from "@kubernetes/client-node";
import {
  validateHorizontalPodAutoscaler,
  validatePodDisruptionBudget,
} from "../../../api/validation/policy.ts";
import { Strategy } from "../strategy.ts";
import type { KObject } from "../types.ts";

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj | undefined =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;

/** A PodDisruptionBudget: its status is the disruption controller's, reset on create. */
export class PodDisruptionBudgetStrategy extends Strategy {
  override prepareForCreate(o: KObject): void {
    o.status = {};
  }

  override validate(o: KObject): V1StatusCause[] {
    const causes = super.validate(o);
    if (causes.some((c) => c.reason === "FieldValueTypeInvalid")) return causes;
    validatePodDisruptionBudget(o, causes);
    return causes;
  }

  override validateUpdate(o: KObject, old: KObject): V1StatusCause[] {
    const causes = super.validateUpdate(o, old);
    if (causes.some((c) => c.reason === "FieldValueTypeInvalid")) return causes;
    validatePodDisruptionBudget(o, causes);
    return causes;
  }
}

/** The scale-up and scale-down rules upstream fills in when `behavior` is given (autoscaling/v2 defaults). */
export function defaultBehavior(behavior: Obj): void {
  const up = (behavior.scaleUp = obj(behavior.scaleUp) ?? {});
  up.stabilizationWindowSeconds ??= 0;
  up.selectPolicy ??= "Max";
  up.policies ??= [
    { type: "Pods", value: 4, periodSeconds: 15 },
    { type: "Percent", value: 100, periodSeconds: 15 },
  ];
  const down = (behavior.scaleDown = obj(behavior.scaleDown) ?? {});
  down.stabilizationWindowSeconds ??= 300;
  down.selectPolicy ??= "Max";
  down.policies ??= [{ type: "Percent", value: 100, periodSeconds: 15 }];
}

/** A HorizontalPodAutoscaler (stored as autoscaling/v2): minReplicas 1, CPU at 80% when no metric is named. */
export class HorizontalPodAutoscalerStrategy extends Strategy {
  override prepareForCreate(o: KObject): void {
    o.status = {};
  }

  override defaults(o: KObject): void {
    const spec = obj(o.spec);
    if (!spec) return;
    spec.minReplicas ??= 1;
    if (!Array.isArray(spec.metrics) || spec.metrics.length === 0)
      spec.metrics = [
        {
          type: "Resource",
          resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 80 } },
        },
      ];
    const behavior = obj(spec.behavior);
    if (behavior) defaultBehavior(behavior);
  }

  override validate(o: KObject): V1StatusCause[] {
    const causes = super.validate(o);
    if (causes.some((c) => c.reason === "FieldValueTypeInvalid")) return causes;
    validateHorizontalPodAutoscaler(o, causes);
    return causes;
  }

  override validateUpdate(o: KObject, old: KObject): V1StatusCause[] {
    const causes = super.validateUpdate(o, old);
    if (causes.some((c) => c.reason === "FieldValueTypeInvalid")) return causes;
    validateHorizontalPodAutoscaler(o, causes);
    return causes;
  }
}
