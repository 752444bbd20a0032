import { defaultRbac } from "../../../api/validation/rbac.ts";
import { Strategy } from "../strategy.ts";
import type { KObject } from "../types.ts";

/** RoleBindings and ClusterRoleBindings: the v1 defaults of roleRef.apiGroup and each subject's apiGroup. */
export class RbacStrategy extends Strategy {
  override defaults(obj: KObject): void {
    super.defaults(obj);
    defaultRbac(this.info.kind, obj);
  }
}
