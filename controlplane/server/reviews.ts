/**
 * authorization.k8s.io/v1, create-only and never stored: SelfSubjectAccessReview ("may I?"),
 * SubjectAccessReview and LocalSubjectAccessReview ("may they?"), SelfSubjectRulesReview ("what
 * may I do in this namespace?"), answered by the same authorizer chain as every request. These are
 * what `kubectl auth can-i` (with `--list`, `-n`, `--as`) posts.
 */
import type { IncomingMessage } from "node:http";
import type { V1StatusCause } from "@kubernetes/client-node";
import type { ResourceInfo } from "../../api/resources.ts";
import { ApiError, badRequest, invalid } from "../../api/status.ts";
import { FieldPath, invalidValue, required } from "../../api/validation/field.ts";
import {
  authorize,
  forbidden,
  isPrivileged,
  nodeName,
  resourceInfoFor,
  type Attributes,
  type NodeGraph,
  type UserInfo,
} from "../authz.ts";
import type { PolicyRule } from "../rbac/rules.ts";
import { objectBody } from "./body.ts";
import type { Reply } from "./reply.ts";

export const AUTHORIZATION_GROUP = "authorization.k8s.io";
const VERSION = "v1";

function review(kind: string, plural: string, namespaced = false): ResourceInfo {
  return {
    ...resourceInfoFor(AUTHORIZATION_GROUP, plural, namespaced),
    version: VERSION,
    kind,
    singular: kind.toLowerCase(),
  };
}

export const AUTHENTICATION_GROUP = "authentication.k8s.io";

export const AUTHENTICATION_REVIEWS = {
  selfsubjectreviews: {
    ...resourceInfoFor(AUTHENTICATION_GROUP, "selfsubjectreviews", false),
    version: VERSION,
    kind: "SelfSubjectReview",
    singular: "selfsubjectreview",
  },
  tokenreviews: {
    ...resourceInfoFor(AUTHENTICATION_GROUP, "tokenreviews", false),
    version: VERSION,
    kind: "TokenReview",
    singular: "tokenreview",
  },
} as const;

export const REVIEWS = {
  selfsubjectaccessreviews: review("SelfSubjectAccessReview", "selfsubjectaccessreviews"),
  selfsubjectrulesreviews: review("SelfSubjectRulesReview", "selfsubjectrulesreviews"),
  subjectaccessreviews: review("SubjectAccessReview", "subjectaccessreviews"),
  localsubjectaccessreviews: review("LocalSubjectAccessReview", "localsubjectaccessreviews", true),
} as const;

/** Discovery's entries for authorization.k8s.io or authentication.k8s.io (all create-only). */
export function reviewResourceList(group = AUTHORIZATION_GROUP): Record<string, unknown> {
  const infos: ResourceInfo[] = Object.values(
    group === AUTHORIZATION_GROUP ? REVIEWS : AUTHENTICATION_REVIEWS,
  );
  return {
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: `${group}/${VERSION}`,
    resources: infos.map((r) => ({
      name: r.plural,
      singularName: r.singular,
      namespaced: r.namespaced,
      kind: r.kind,
      verbs: ["create"],
    })),
  };
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj | undefined =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
const str = (v: unknown): string => (typeof v === "string" ? v : "");

interface ReviewRoute {
  info: ResourceInfo;
  namespace?: string;
}

/** /apis/authorization.k8s.io/v1/(namespaces/NS/)PLURAL, or undefined for any other path. */
export function parseReviewPath(path: string): ReviewRoute | undefined {
  const auth = /^\/apis\/authentication\.k8s\.io\/v1\/([a-z]+)$/.exec(path);
  if (auth) {
    const info = (AUTHENTICATION_REVIEWS as Record<string, ResourceInfo>)[auth[1]!];
    return info ? { info } : undefined;
  }
  const m = /^\/apis\/authorization\.k8s\.io\/v1\/(?:namespaces\/([^/]+)\/)?([a-z]+)$/.exec(path);
  if (!m) return undefined;
  const info = (REVIEWS as Record<string, ResourceInfo>)[m[2]!];
  if (!info || info.namespaced !== (m[1] !== undefined)) return undefined;
  if (m[1] === undefined) return { info };
  try {
    return { info, namespace: decodeURIComponent(m[1]) };
  } catch {
    throw badRequest(`the path segment "${m[1].slice(0, 200)}" is not valid percent-encoded UTF-8`);
  }
}

const SPEC = FieldPath.root("spec");

/** Exactly one of resourceAttributes and nonResourceAttributes (upstream's ValidateSubjectAccessReviewSpec). */
function validateAttributes(spec: Obj, causes: V1StatusCause[], local: boolean): void {
  const res = obj(spec.resourceAttributes);
  const non = obj(spec.nonResourceAttributes);
  if (local && non)
    causes.push(invalidValue(SPEC.child("nonResourceAttributes"), non, "disallowed on this kind of request"));
  else if (res && non)
    causes.push(
      invalidValue(
        SPEC.child("nonResourceAttributes"),
        non,
        "cannot be specified in combination with resourceAttributes",
      ),
    );
  else if (!res && !non)
    causes.push(
      required(
        SPEC.child("resourceAttributes"),
        "exactly one of nonResourceAttributes or resourceAttributes must be specified",
      ),
    );
}

export interface ReviewStatus {
  allowed: boolean;
  reason?: string;
  evaluationError?: string;
}

/** What `user` may do per one review spec, by the server's own authorizer chain. */
export async function accessReview(user: UserInfo, spec: Obj, graph: NodeGraph): Promise<ReviewStatus> {
  const res = obj(spec.resourceAttributes);
  if (res) {
    const namespace = str(res.namespace);
    const attrs: Attributes = {
      verb: str(res.verb),
      info: resourceInfoFor(str(res.group), str(res.resource), namespace !== ""),
      ...(str(res.subresource) ? { subresource: str(res.subresource) } : {}),
      ...(namespace ? { namespace } : {}),
      ...(str(res.name) ? { name: str(res.name) } : {}),
    };
    const d = await authorize(user, attrs, graph);
    return d.allowed ? { allowed: true, ...(d.reason ? { reason: d.reason } : {}) } : { allowed: false };
  }
  const non = obj(spec.nonResourceAttributes) ?? {};
  return nonResourceDecision(user, str(non.verb), str(non.path), graph);
}

async function nonResourceDecision(
  user: UserInfo,
  verb: string,
  path: string,
  graph: NodeGraph,
): Promise<ReviewStatus> {
  // The fixed policy's wide grant: system:masters and the control-plane users may do anything.
  if (isPrivileged(user)) return { allowed: true };
  if (!graph.rbac) return { allowed: false };
  const d = await graph.rbac.authorize(user, { resourceRequest: false, verb, path });
  return d.allowed ? { allowed: true, reason: d.reason } : { allowed: false };
}

function toReviewRules(rules: PolicyRule[]): { resourceRules: Obj[]; nonResourceRules: Obj[] } {
  const resourceRules: Obj[] = [];
  const nonResourceRules: Obj[] = [];
  const seen = new Set<string>();
  for (const r of rules) {
    const key = JSON.stringify(r);
    if (seen.has(key)) continue;
    seen.add(key);
    if (Array.isArray(r.nonResourceURLs) && r.nonResourceURLs.length > 0)
      nonResourceRules.push({ verbs: r.verbs ?? [], nonResourceURLs: r.nonResourceURLs });
    else
      resourceRules.push({
        verbs: r.verbs ?? [],
        apiGroups: r.apiGroups ?? [],
        resources: r.resources ?? [],
        ...(r.resourceNames?.length ? { resourceNames: r.resourceNames } : {}),
      });
  }
  return { resourceRules, nonResourceRules };
}

/** SelfSubjectRulesReview's status: the caller's rules in the namespace, as upstream's RulesFor. */
async function rulesReview(user: UserInfo, namespace: string, graph: NodeGraph): Promise<Obj> {
  if (nodeName(user) !== undefined)
    return {
      resourceRules: [],
      nonResourceRules: [],
      incomplete: true,
      evaluationError: "node authorizer does not support user rule resolution",
    };
  const rules: PolicyRule[] = [];
  if (isPrivileged(user))
    rules.push(
      { verbs: ["*"], apiGroups: ["*"], resources: ["*"] },
      { verbs: ["*"], nonResourceURLs: ["*"] },
    );
  if (graph.rbac) rules.push(...(await graph.rbac.rulesFor(user, namespace)));
  return { ...toReviewRules(rules), incomplete: false };
}

function userInfo(u: UserInfo): Obj {
  return { username: u.name, groups: u.groups };
}

/** TokenReview's status: whether the token authenticates here, and as whom (audiences: the API's). */
async function tokenReview(
  spec: Obj | undefined,
  authenticateToken: (token: string) => Promise<UserInfo>,
): Promise<Obj> {
  const token = str(spec?.token);
  if (!token) return { authenticated: false, user: {}, error: "token is required" };
  try {
    return { authenticated: true, user: userInfo(await authenticateToken(token)) };
  } catch {
    return { authenticated: false, user: {}, error: "invalid bearer token" };
  }
}

/** POST to one of the review resources: authorizes the create, validates, answers 201 with the status. */
export async function serveReview(
  req: IncomingMessage,
  reply: Reply,
  method: string,
  route: ReviewRoute,
  user: UserInfo,
  graph: NodeGraph,
  authenticateToken: (token: string) => Promise<UserInfo>,
): Promise<void> {
  const { info } = route;
  if (method !== "POST")
    throw new ApiError(
      405,
      "MethodNotAllowed",
      `the server does not allow this method on the requested resource (${method} ${info.plural}.${info.group})`,
    );
  const attrs: Attributes = {
    verb: "create",
    info,
    ...(route.namespace ? { namespace: route.namespace } : {}),
  };
  const allowed = await authorize(user, attrs, graph);
  if (!allowed.allowed) throw forbidden(attrs, allowed.reason);
  const body = await objectBody(req, info, info.kind);
  if (info.group === AUTHENTICATION_GROUP)
    return reply.json(201, {
      kind: info.kind,
      apiVersion: `${AUTHENTICATION_GROUP}/${VERSION}`,
      metadata: { ...body.metadata, creationTimestamp: null },
      ...(info.kind === "TokenReview" ? { spec: body.spec ?? {} } : {}),
      status:
        info.kind === "TokenReview"
          ? await tokenReview(obj(body.spec), authenticateToken)
          : { userInfo: userInfo(user) },
    });
  const spec = obj(body.spec);
  const causes: V1StatusCause[] = [];
  const name = str(body.metadata.name);
  if (!spec) {
    if (info.kind === "SelfSubjectRulesReview") throw badRequest("no namespace on request");
    causes.push(required(SPEC));
    throw invalid(info.kind, name, causes, info.group);
  }
  let status: Obj;
  switch (info.kind) {
    case "SelfSubjectRulesReview": {
      const ns = str(spec.namespace);
      if (!ns) throw badRequest("no namespace on request");
      status = await rulesReview(user, ns, graph);
      break;
    }
    case "SelfSubjectAccessReview":
      validateAttributes(spec, causes, false);
      if (causes.length) throw invalid(info.kind, name, causes, info.group);
      status = { ...(await accessReview(user, spec, graph)) };
      break;
    default: {
      const local = info.kind === "LocalSubjectAccessReview";
      validateAttributes(spec, causes, local);
      const subject = str(spec.user);
      const groups = Array.isArray(spec.groups)
        ? spec.groups.filter((g): g is string => typeof g === "string")
        : [];
      if (subject === "" && groups.length === 0)
        causes.push(
          invalidValue(SPEC.child("user"), subject, "at least one of user or group must be specified"),
        );
      const resNs = str(obj(spec.resourceAttributes)?.namespace);
      if (local && resNs !== route.namespace)
        causes.push(
          invalidValue(
            SPEC.child("resourceAttributes").child("namespace"),
            resNs,
            "must match metadata.namespace",
          ),
        );
      if (causes.length) throw invalid(info.kind, name, causes, info.group);
      status = { ...(await accessReview({ name: subject, groups }, spec, graph)) };
    }
  }
  reply.json(201, {
    kind: info.kind,
    apiVersion: `${AUTHORIZATION_GROUP}/${VERSION}`,
    metadata: { ...body.metadata, creationTimestamp: null },
    spec,
    status,
  });
}
