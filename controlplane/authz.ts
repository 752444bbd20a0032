import type { ResourceInfo } from "../api/resources.ts";

/** Who is calling: from the verified client certificate (CN = user, O = groups). */
export interface UserInfo {
  name: string;
  groups: string[];
}

export interface Attributes {
  verb: string; // get list watch create update patch delete deletecollection
  info: ResourceInfo;
  subresource?: string;
  namespace?: string;
  name?: string;
}

/** Control-plane identities that may do anything besides system:masters. */
const PRIVILEGED_USERS = new Set([
  "system:kube-scheduler",
  "system:kube-controller-manager",
  "system:apiserver",
]);
const READ = new Set(["get", "list", "watch"]);

export type Decision = { allowed: true; node?: string } | { allowed: false; reason: string };

/**
 * The fixed authorization policy: system:masters and control-plane users may do anything; a node
 * (system:node:NAME in system:nodes) may read what its pods need and write only its own Node, its
 * own Lease and (checked again against the stored object) pods bound to it. Everyone else: 403.
 */
export function authorize(user: UserInfo, a: Attributes): Decision {
  if (user.groups.includes("system:masters") || PRIVILEGED_USERS.has(user.name)) return { allowed: true };
  const deny = (): Decision => ({
    allowed: false,
    reason:
      `User "${user.name}" cannot ${a.verb} resource "${a.info.plural}${a.subresource ? "/" + a.subresource : ""}" in API group "${a.info.group}"` +
      (a.namespace ? ` in the namespace "${a.namespace}"` : a.info.namespaced ? "" : " at the cluster scope"),
  });
  if (!user.groups.includes("system:nodes") || !user.name.startsWith("system:node:")) return deny();
  const node = user.name.slice("system:node:".length);
  switch (a.info.kind) {
    case "Node":
      if (READ.has(a.verb)) return { allowed: true };
      // A create is allowed here; the handler checks the body's name against `node`.
      if (a.verb === "create") return { allowed: true, node };
      if (a.name === node) return a.verb === "deletecollection" ? deny() : { allowed: true };
      return deny();
    case "Lease":
      if (a.namespace === "kube-node-lease" && a.verb === "create") return { allowed: true, node };
      if (a.namespace === "kube-node-lease" && a.name === node) return { allowed: true };
      return READ.has(a.verb) && a.namespace === "kube-node-lease" ? { allowed: true } : deny();
    case "Pod":
      if (READ.has(a.verb) && !a.subresource) return { allowed: true };
      if (["update", "patch", "delete"].includes(a.verb) && a.name) return { allowed: true, node };
      return deny();
    case "Event":
      return ["create", "update", "patch"].includes(a.verb) || READ.has(a.verb) ? { allowed: true } : deny();
    case "Service":
    case "Endpoints":
    case "ConfigMap":
    case "Secret":
    case "Namespace":
    case "ServiceAccount":
      return READ.has(a.verb) ? { allowed: true } : deny();
    default:
      return deny();
  }
}
