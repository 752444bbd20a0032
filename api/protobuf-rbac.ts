/**
 * The field tables of the RBAC, access-review and token kinds api/protobuf.ts decodes (after
 * k8s.io/api's generated.proto), beside protobuf-fields.ts' tables of the other kinds.
 */
import { labelSelector, objectMeta, type Schema } from "./protobuf-fields.ts";

// rbac.authorization.k8s.io/v1, authorization.k8s.io/v1 and authentication.k8s.io/v1 (TokenRequest),
// as `kubectl create role|clusterrole|rolebinding|clusterrolebinding|token` and `kubectl auth can-i` post them.
const policyRule: Schema = {
  1: ["verbs", "string", "repeated"],
  2: ["apiGroups", "string", "repeated"],
  3: ["resources", "string", "repeated"],
  4: ["resourceNames", "string", "repeated"],
  5: ["nonResourceURLs", "string", "repeated"],
};
const rbacSubject: Schema = {
  1: ["kind", "string"],
  2: ["apiGroup", "string"],
  3: ["name", "string"],
  4: ["namespace", "string"],
};
const roleRef: Schema = { 1: ["apiGroup", "string"], 2: ["kind", "string"], 3: ["name", "string"] };
const binding: Schema = {
  1: ["metadata", objectMeta],
  2: ["subjects", rbacSubject, "repeated"],
  3: ["roleRef", roleRef],
};
const resourceAttributes: Schema = {
  1: ["namespace", "string"],
  2: ["verb", "string"],
  3: ["group", "string"],
  4: ["version", "string"],
  5: ["resource", "string"],
  6: ["subresource", "string"],
  7: ["name", "string"],
};
const nonResourceAttributes: Schema = { 1: ["path", "string"], 2: ["verb", "string"] };

export const RBAC_KINDS: Record<string, Schema> = {
  Role: { 1: ["metadata", objectMeta], 2: ["rules", policyRule, "repeated"] },
  ClusterRole: {
    1: ["metadata", objectMeta],
    2: ["rules", policyRule, "repeated"],
    3: ["aggregationRule", { 1: ["clusterRoleSelectors", labelSelector, "repeated"] }],
  },
  RoleBinding: binding,
  ClusterRoleBinding: binding,
  SelfSubjectAccessReview: {
    1: ["metadata", objectMeta],
    2: [
      "spec",
      { 1: ["resourceAttributes", resourceAttributes], 2: ["nonResourceAttributes", nonResourceAttributes] },
    ],
    3: ["status", {}],
  },
  SelfSubjectRulesReview: {
    1: ["metadata", objectMeta],
    2: ["spec", { 1: ["namespace", "string"] }],
    3: ["status", {}],
  },
  SubjectAccessReview: {
    1: ["metadata", objectMeta],
    2: [
      "spec",
      {
        1: ["resourceAttributes", resourceAttributes],
        2: ["nonResourceAttributes", nonResourceAttributes],
        3: ["user", "string"],
        4: ["groups", "string", "repeated"],
        6: ["uid", "string"],
      },
    ],
    3: ["status", {}],
  },
  SelfSubjectReview: { 1: ["metadata", objectMeta], 2: ["status", {}] },
  TokenReview: {
    1: ["metadata", objectMeta],
    2: ["spec", { 1: ["token", "string"], 2: ["audiences", "string", "repeated"] }],
    3: ["status", {}],
  },
  TokenRequest: {
    1: ["metadata", objectMeta],
    2: [
      "spec",
      {
        1: ["audiences", "string", "repeated"],
        3: [
          "boundObjectRef",
          { 1: ["kind", "string"], 2: ["apiVersion", "string"], 3: ["name", "string"], 4: ["uid", "string"] },
        ],
        4: ["expirationSeconds", "int"],
      },
    ],
    3: ["status", {}],
  },
};

export const RBAC_API_VERSIONS: Record<string, string> = {
  Role: "rbac.authorization.k8s.io/v1",
  ClusterRole: "rbac.authorization.k8s.io/v1",
  RoleBinding: "rbac.authorization.k8s.io/v1",
  ClusterRoleBinding: "rbac.authorization.k8s.io/v1",
  SelfSubjectAccessReview: "authorization.k8s.io/v1",
  SelfSubjectRulesReview: "authorization.k8s.io/v1",
  SubjectAccessReview: "authorization.k8s.io/v1",
  TokenRequest: "authentication.k8s.io/v1",
  SelfSubjectReview: "authentication.k8s.io/v1",
  TokenReview: "authentication.k8s.io/v1",
};
