import { plan, type Plan } from "../../topology/plan.ts";
import { LabFile } from "../../topology/schema.ts";

/** The plan of lab `name` for a topology `spec`, parsed as a topology file would be. */
export function labPlan(name: string, spec?: Record<string, unknown>): Plan {
  return plan(
    LabFile.parse({ apiVersion: "lab/v1alpha1", kind: "Lab", metadata: { name }, ...(spec ? { spec } : {}) }),
  );
}
