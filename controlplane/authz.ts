import { RESOURCES, type ResourceInfo } from "../api/resources.ts";
import { ApiError } from "../api/status.ts";
import type { PolicyRule, RbacDecision, RbacRequest } from "./rbac/rules.ts";

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

type Obj = Record<string, unknown>;

/** What the Node authorizer needs to know about the cluster, read fresh on every check (no cache to go stale). */
export interface NodeGraph {
  /** The pods in `namespace` whose spec.nodeName is `node`. */
  podsOnNode(node: string, namespace: string): Promise<Obj[]>;
  /** The RBAC authorizer (controlplane/rbac/), consulted only where the fixed policy denies. */
  rbac?: {
    authorize(user: UserInfo, req: RbacRequest): Promise<RbacDecision>;
    /** Every rule the user holds in the namespace (SelfSubjectRulesReview). */
    rulesFor(user: UserInfo, namespace: string | undefined): Promise<PolicyRule[]>;
  };
}

/** Control-plane identities that may do anything besides system:masters. */
const PRIVILEGED_USERS = new Set([
  "system:kube-scheduler",
  "system:kube-controller-manager",
  "system:apiserver",
]);
const READ = new Set(["get", "list", "watch"]);

/**
 * `node` is set when the caller is a node whose request is allowed only for some objects: the
 * handler hands each object it is about to touch to admitNode (Kubernetes' NodeRestriction).
 */
export type Decision =
  { allowed: true; node: string | undefined; reason?: string } | { allowed: false; reason: string };

const ALLOW: Decision = Object.freeze({ allowed: true, node: undefined });

/** system:masters and the control-plane users: allowed everything by the fixed policy. */
export function isPrivileged(user: UserInfo): boolean {
  return user.groups.includes("system:masters") || PRIVILEGED_USERS.has(user.name);
}

/** The node's name when the user is a node identity (system:node:NAME in group system:nodes). */
export function nodeName(user: UserInfo): string | undefined {
  if (!user.groups.includes("system:nodes") || !user.name.startsWith("system:node:")) return undefined;
  const name = user.name.slice("system:node:".length);
  return name === "" ? undefined : name;
}

export function rbacReason(user: UserInfo, a: Attributes): string {
  const resource = a.info.plural + (a.subresource ? "/" + a.subresource : "");
  const where = a.namespace
    ? ` in the namespace "${a.namespace}"`
    : a.info.namespaced
      ? ""
      : " at the cluster scope";
  return `User "${user.name}" cannot ${a.verb} resource "${resource}" in API group "${a.info.group}"${where}`;
}

/** kube-apiserver's 403: `pods "x" is forbidden: User "..." cannot delete resource "pods" ...`. */
export function forbidden(a: Attributes, reason: string): ApiError {
  const qualified = a.info.group ? `${a.info.plural}.${a.info.group}` : a.info.plural;
  const what = a.name ? `${qualified} "${a.name}"` : qualified;
  return new ApiError(403, "Forbidden", `${what} is forbidden: ${reason}`, {
    ...(a.name ? { name: a.name } : {}),
    group: a.info.group,
    kind: a.info.plural,
  });
}

function asObj(v: unknown): Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : {};
}
function asArr(v: unknown): Obj[] {
  return Array.isArray(v) ? v.map(asObj) : [];
}
function named(v: unknown): string | undefined {
  return typeof v === "string" && v !== "" ? v : undefined;
}

/** Names of the Secrets, ConfigMaps, PVCs and ServiceAccount a pod refers to (the Node authorizer's graph edges). */
export function podReferences(
  pod: Obj,
): Record<"Secret" | "ConfigMap" | "PersistentVolumeClaim" | "ServiceAccount", Set<string>> {
  const refs = {
    Secret: new Set<string>(),
    ConfigMap: new Set<string>(),
    PersistentVolumeClaim: new Set<string>(),
    ServiceAccount: new Set<string>(),
  };
  const add = (set: Set<string>, v: unknown): void => {
    const n = named(v);
    if (n) set.add(n);
  };
  const spec = asObj(pod.spec);
  const podName = named(asObj(pod.metadata).name);
  refs.ServiceAccount.add(named(spec.serviceAccountName) ?? "default");
  for (const s of asArr(spec.imagePullSecrets)) add(refs.Secret, s.name);
  for (const v of asArr(spec.volumes)) {
    add(refs.Secret, asObj(v.secret).secretName);
    add(refs.ConfigMap, asObj(v.configMap).name);
    add(refs.PersistentVolumeClaim, asObj(v.persistentVolumeClaim).claimName);
    if (v.ephemeral !== undefined && podName && named(v.name))
      refs.PersistentVolumeClaim.add(`${podName}-${String(v.name)}`);
    for (const src of asArr(asObj(v.projected).sources)) {
      add(refs.Secret, asObj(src.secret).name);
      add(refs.ConfigMap, asObj(src.configMap).name);
    }
    for (const k of [
      "cephfs",
      "cinder",
      "flexVolume",
      "iscsi",
      "rbd",
      "scaleIO",
      "storageos",
      "azureFile",
      "csi",
    ]) {
      const secretRef = asObj(asObj(v[k]).secretRef ?? asObj(v[k]).nodePublishSecretRef);
      add(refs.Secret, secretRef.name);
    }
  }
  for (const list of ["containers", "initContainers", "ephemeralContainers"]) {
    for (const c of asArr(spec[list])) {
      for (const e of asArr(c.env)) {
        const from = asObj(e.valueFrom);
        add(refs.Secret, asObj(from.secretKeyRef).name);
        add(refs.ConfigMap, asObj(from.configMapKeyRef).name);
      }
      for (const e of asArr(c.envFrom)) {
        add(refs.Secret, asObj(e.secretRef).name);
        add(refs.ConfigMap, asObj(e.configMapRef).name);
      }
    }
  }
  return refs;
}

/** Kubernetes' Node authorizer: what a node may do at all; per-object checks follow in admitNode. */
async function authorizeNode(
  node: string,
  user: UserInfo,
  a: Attributes,
  graph: NodeGraph,
): Promise<Decision> {
  const deny = (why?: string): Decision => ({
    allowed: false,
    reason: rbacReason(user, a) + (why ? `: ${why}` : ""),
  });
  switch (a.info.kind) {
    case "Node":
      if (READ.has(a.verb) && a.subresource === undefined) return ALLOW;
      if (a.verb === "create" && !a.subresource) return { allowed: true, node };
      if (["update", "patch", "delete"].includes(a.verb) && (!a.subresource || a.subresource === "status")) {
        if (a.name === node) return ALLOW;
        return deny(`node '${node}' is not allowed to modify node '${a.name ?? ""}'`);
      }
      return deny();
    case "Lease":
      if (a.namespace !== "kube-node-lease" || a.subresource) return deny();
      if (a.verb === "create") return { allowed: true, node };
      if (["get", "update", "patch", "delete"].includes(a.verb) && a.name === node) return ALLOW;
      return deny("can only access node lease with the same name as the requesting node");
    case "Pod":
      if (READ.has(a.verb) && !a.subresource) return ALLOW;
      if ((a.verb === "update" || a.verb === "patch") && a.subresource === "status" && a.name)
        return { allowed: true, node };
      if (a.verb === "delete" && !a.subresource && a.name) return { allowed: true, node };
      return deny();
    case "Event":
      // A new event must be about this node or one of its pods (admitNode checks the body).
      if (a.verb === "create" && !a.subresource) return { allowed: true, node };
      return ["update", "patch"].includes(a.verb) && !a.subresource ? ALLOW : deny();
    case "Service":
    case "Endpoints":
    case "Namespace":
      return READ.has(a.verb) && !a.subresource ? ALLOW : deny();
    case "Secret":
    case "ConfigMap":
    case "PersistentVolumeClaim":
    case "ServiceAccount": {
      // A token for the service account of a pod on this node (admitNode: bound to that pod).
      if (a.info.kind === "ServiceAccount" && a.verb === "create" && a.subresource === "token") {
        if (!a.name || !a.namespace) return deny();
        const pods = await graph.podsOnNode(node, a.namespace);
        if (pods.some((p) => podReferences(p).ServiceAccount.has(a.name!))) return { allowed: true, node };
        return deny(`no relationship found between node '${node}' and this object`);
      }
      // Only a get of a named object some pod on this node refers to (never list, watch or write).
      if (a.verb !== "get" || !a.name || !a.namespace || a.subresource) return deny();
      const kind = a.info.kind as keyof ReturnType<typeof podReferences>;
      const pods = await graph.podsOnNode(node, a.namespace);
      if (pods.some((p) => podReferences(p)[kind].has(a.name!))) return ALLOW;
      return deny(`no relationship found between node '${node}' and this object`);
    }
    default:
      return deny();
  }
}

/**
 * The fixed policy: system:masters and control-plane users may do anything; a node
 * (system:node:NAME in system:nodes) is held to Kubernetes' Node authorizer. Everyone else: denied.
 */
async function fixedPolicy(user: UserInfo, a: Attributes, graph: NodeGraph): Promise<Decision> {
  if (isPrivileged(user)) return ALLOW;
  const node = nodeName(user);
  if (node === undefined) return { allowed: false, reason: rbacReason(user, a) };
  return authorizeNode(node, user, a, graph);
}

/**
 * The ResourceInfo behind group/resource for attributes that do not come from a served path
 * (access reviews, impersonation's users and groups): the served kind when there is one, else a
 * stand-in that only names the resource.
 */
export function resourceInfoFor(group: string, plural: string, namespaced: boolean): ResourceInfo {
  const served = RESOURCES.find((r) => r.group === group && r.plural === plural);
  if (served) return served;
  return {
    group,
    version: "",
    kind: "",
    plural,
    singular: "",
    namespaced,
    shortNames: [],
    inAll: false,
    status: false,
    scale: false,
  };
}

/** The request in RBAC's terms. */
export function rbacRequestOf(a: Attributes): RbacRequest {
  return {
    resourceRequest: true,
    verb: a.verb,
    apiGroup: a.info.group,
    resource: a.info.plural,
    ...(a.subresource ? { subresource: a.subresource } : {}),
    ...(a.name ? { name: a.name } : {}),
    ...(a.namespace ? { namespace: a.namespace } : {}),
  };
}

/**
 * The authorization chain, as kube-apiserver's `--authorization-mode=Node,RBAC` plus the
 * privileged groups: the fixed policy first, and where it denies, RBAC (when the server has it).
 * A denial keeps the fixed policy's reason, which reads as upstream's RBAC denial.
 */
export async function authorize(user: UserInfo, a: Attributes, graph: NodeGraph): Promise<Decision> {
  const fixed = await fixedPolicy(user, a, graph);
  if (fixed.allowed || !graph.rbac) return fixed;
  const r = await graph.rbac.authorize(user, rbacRequestOf(a));
  return r.allowed ? { allowed: true, node: undefined, reason: r.reason } : fixed;
}

/**
 * NodeRestriction on one object (the stored one for update/patch/delete, the body for create):
 * undefined when the node may go on, else why not.
 */
export async function admitNode(
  node: string,
  a: Attributes,
  obj: Obj,
  graph: NodeGraph,
): Promise<string | undefined> {
  const meta = asObj(obj.metadata);
  const spec = asObj(obj.spec);
  switch (a.info.kind) {
    case "Pod":
      if (spec.nodeName === node) return undefined;
      return a.verb === "delete"
        ? `node '${node}' can only delete pods with spec.nodeName set to itself`
        : `node '${node}' can only update pod status for pods with spec.nodeName set to itself`;
    case "Node":
      return meta.name === node
        ? undefined
        : `node '${node}' is not allowed to modify node '${named(meta.name) ?? ""}'`;
    case "Lease":
      return meta.name === node
        ? undefined
        : "can only access node lease with the same name as the requesting node";
    case "ServiceAccount": {
      // The TokenRequest's body: bound to a pod of this node, by name and uid.
      if (a.subresource !== "token") break;
      const ref = asObj(asObj(obj.spec).boundObjectRef);
      if (ref.kind !== "Pod") return "node requested token not bound to a pod";
      if (!named(ref.uid)) return "node requested token with a pod binding without a uid";
      const pods = a.namespace ? await graph.podsOnNode(node, a.namespace) : [];
      const pod = pods.find((p) => asObj(p.metadata).name === ref.name);
      if (!pod) return "node requested token bound to a pod scheduled on a different node";
      if (asObj(pod.metadata).uid !== ref.uid)
        return `the UID in the bound object reference (${String(ref.uid)}) does not match the UID in record. The object might have been deleted and then recreated`;
      return undefined;
    }
    case "Event": {
      const about = asObj(obj.involvedObject);
      if (about.kind === "Node" && about.name === node) return undefined;
      const ns = named(about.namespace) ?? a.namespace;
      if (about.kind === "Pod" && ns && named(about.name)) {
        const pods = await graph.podsOnNode(node, ns);
        if (pods.some((p) => asObj(p.metadata).name === about.name)) return undefined;
      }
      return `node '${node}' can only create events about itself or pods bound to it`;
    }
    default:
      break;
  }
  return `node '${node}' may not ${a.verb} ${a.info.plural}`;
}
