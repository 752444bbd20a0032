import type { V1StatusCause } from "@kubernetes/client-node";
import { stableStringify } from "../../lib/stable-json.ts";
import { FieldPath, invalidValue, notSupported, required } from "./field.ts";
import type { NameCheck } from "./names.ts";
import { isDns1123Subdomain } from "./names.ts";
import { validateLabelSelector } from "./policy.ts";

/** rbac.authorization.k8s.io/v1 rules (pkg/apis/rbac/validation), run once the field types are right. */

type Obj = Record<string, unknown>;
const ROOT = FieldPath.root();
const G = "rbac.authorization.k8s.io";

const obj = (v: unknown): Obj | undefined =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x) => typeof x === "string") : []);

/** path.IsValidPathSegmentName: RBAC names may hold colons (`system:basic-user`), not `/` or `%`. */
export const isValidPathSegmentName: NameCheck = (name) => {
  if (name === "." || name === "..") return [`may not be '${name}'`];
  const out: string[] = [];
  for (const c of ["/", "%"]) if (name.includes(c)) out.push(`may not contain '${c}'`);
  return out;
};

function validateRules(list: unknown, namespaced: boolean, causes: V1StatusCause[]): void {
  (Array.isArray(list) ? list : []).forEach((raw, i) => {
    const r = obj(raw) ?? {};
    const p = ROOT.child("rules").index(i);
    if (strings(r.verbs).length === 0)
      causes.push(required(p.child("verbs"), "verbs must contain at least one value"));
    const urls = strings(r.nonResourceURLs);
    if (urls.length > 0) {
      if (namespaced)
        causes.push(
          invalidValue(
            p.child("nonResourceURLs"),
            urls,
            "namespaced rules cannot apply to non-resource URLs",
          ),
        );
      if (strings(r.apiGroups).length > 0 || strings(r.resources).length > 0)
        causes.push(
          invalidValue(
            p.child("nonResourceURLs"),
            urls,
            "rules cannot apply to both regular resources and non-resource URLs",
          ),
        );
      return;
    }
    if (strings(r.apiGroups).length === 0)
      causes.push(required(p.child("apiGroups"), "resource rules must supply at least one api group"));
    if (strings(r.resources).length === 0)
      causes.push(required(p.child("resources"), "resource rules must supply at least one resource"));
  });
}

function validateRoleRef(ref: Obj | undefined, clusterBinding: boolean, causes: V1StatusCause[]): void {
  const p = ROOT.child("roleRef");
  const r = ref ?? {};
  if (r.apiGroup !== G) causes.push(notSupported(p.child("apiGroup"), r.apiGroup ?? "", [G]));
  const kinds = clusterBinding ? ["ClusterRole"] : ["Role", "ClusterRole"];
  if (!kinds.includes(r.kind as string)) causes.push(notSupported(p.child("kind"), r.kind ?? "", kinds));
  if (typeof r.name !== "string" || r.name === "") causes.push(required(p.child("name")));
  else
    for (const m of isValidPathSegmentName(r.name, false))
      causes.push(invalidValue(p.child("name"), r.name, m));
}

function validateSubjects(list: unknown, clusterBinding: boolean, causes: V1StatusCause[]): void {
  (Array.isArray(list) ? list : []).forEach((raw, i) => {
    const s = obj(raw) ?? {};
    const p = ROOT.child("subjects").index(i);
    const name = typeof s.name === "string" ? s.name : "";
    if (name === "") causes.push(required(p.child("name")));
    switch (s.kind) {
      case "ServiceAccount":
        if (name !== "")
          for (const m of isDns1123Subdomain(name)) causes.push(invalidValue(p.child("name"), name, m));
        if ((s.apiGroup ?? "") !== "") causes.push(notSupported(p.child("apiGroup"), s.apiGroup, [""]));
        if (clusterBinding && (typeof s.namespace !== "string" || s.namespace === ""))
          causes.push(required(p.child("namespace")));
        break;
      case "User":
      case "Group":
        if (s.apiGroup !== G) causes.push(notSupported(p.child("apiGroup"), s.apiGroup ?? "", [G]));
        break;
      default:
        causes.push(notSupported(p.child("kind"), s.kind ?? "", ["ServiceAccount", "User", "Group"]));
    }
  });
}

/** Rules of a new Role, ClusterRole, RoleBinding or ClusterRoleBinding (also run on every update). */
export function validateRbac(kind: string, o: Obj, causes: V1StatusCause[]): void {
  switch (kind) {
    case "Role":
      validateRules(o.rules, true, causes);
      break;
    case "ClusterRole": {
      validateRules(o.rules, false, causes);
      const agg = obj(o.aggregationRule);
      if (agg)
        (Array.isArray(agg.clusterRoleSelectors) ? agg.clusterRoleSelectors : []).forEach((sel, i) =>
          validateLabelSelector(
            sel,
            ROOT.child("aggregationRule").child("clusterRoleSelectors").index(i),
            causes,
          ),
        );
      break;
    }
    case "RoleBinding":
    case "ClusterRoleBinding":
      validateRoleRef(obj(o.roleRef), kind === "ClusterRoleBinding", causes);
      validateSubjects(o.subjects, kind === "ClusterRoleBinding", causes);
      break;
  }
}

/** A binding's roleRef never changes (upstream: delete and recreate the binding). */
export function validateRbacUpdate(kind: string, next: Obj, old: Obj, causes: V1StatusCause[]): void {
  if (kind !== "RoleBinding" && kind !== "ClusterRoleBinding") return;
  if (stableStringify(next.roleRef) !== stableStringify(old.roleRef))
    causes.push(invalidValue("roleRef", next.roleRef, "cannot change roleRef"));
}

/** SetDefaults_Subject and the roleRef's group, as the v1 defaulting does. */
export function defaultRbac(kind: string, o: Obj): void {
  if (kind !== "RoleBinding" && kind !== "ClusterRoleBinding") return;
  const ref = obj(o.roleRef);
  if (ref && (ref.apiGroup === undefined || ref.apiGroup === "")) ref.apiGroup = G;
  for (const raw of Array.isArray(o.subjects) ? o.subjects : []) {
    const s = obj(raw);
    if (!s) continue;
    if ((s.apiGroup === undefined || s.apiGroup === "") && (s.kind === "User" || s.kind === "Group"))
      s.apiGroup = G;
    if (s.apiGroup === undefined && s.kind === "ServiceAccount") s.apiGroup = "";
  }
}
