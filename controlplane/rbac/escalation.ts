/**
 * RBAC's escalation prevention (pkg/registry/rbac/*\/policybased and
 * pkg/registry/rbac/validation): a Role or ClusterRole may only grant what its writer holds
 * (unless the writer may `escalate` it), a binding may only hand out a role whose rules the writer
 * holds (unless the writer may `bind` it), and an aggregated ClusterRole needs full authority.
 * `covers` and the message are pure; `confirmNoEscalation` reads through the authorizer.
 */
import type { PolicyRule } from "./rules.ts";

const list = (v: unknown): string[] =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];

/** One servant rule split into single group/resource/verb (and name, and url) rules, as BreakdownRule. */
export function breakdown(rule: PolicyRule): PolicyRule[] {
  const out: PolicyRule[] = [];
  for (const group of list(rule.apiGroups))
    for (const resource of list(rule.resources))
      for (const verb of list(rule.verbs)) {
        const names = list(rule.resourceNames);
        if (names.length === 0) out.push({ apiGroups: [group], resources: [resource], verbs: [verb] });
        else
          for (const name of names)
            out.push({ apiGroups: [group], resources: [resource], resourceNames: [name], verbs: [verb] });
      }
  for (const url of list(rule.nonResourceURLs))
    for (const verb of list(rule.verbs)) out.push({ nonResourceURLs: [url], verbs: [verb] });
  return out;
}

function has(values: string[], v: string): boolean {
  return values.includes("*") || values.includes(v);
}

function resourceCovered(owner: string[], resource: string): boolean {
  if (owner.includes("*") || owner.includes(resource)) return true;
  const slash = resource.indexOf("/");
  if (slash < 0) return false;
  // `pods/*` covers every subresource of pods, `*/scale` one subresource of every resource.
  return owner.includes(`${resource.slice(0, slash)}/*`) || owner.includes(`*${resource.slice(slash)}`);
}

function urlCovered(owner: string[], url: string): boolean {
  return owner.some((u) => u === "*" || u === url || (u.endsWith("*") && url.startsWith(u.slice(0, -1))));
}

/** Whether one owner rule covers one broken-down servant rule (upstream's ruleCovers). */
export function ruleCovers(owner: PolicyRule, servant: PolicyRule): boolean {
  const verbs = list(owner.verbs);
  if (!list(servant.verbs).every((v) => has(verbs, v))) return false;
  if (list(servant.nonResourceURLs).length > 0)
    return list(servant.nonResourceURLs).every((u) => urlCovered(list(owner.nonResourceURLs), u));
  const groups = list(owner.apiGroups);
  if (!list(servant.apiGroups).every((g) => has(groups, g))) return false;
  if (!list(servant.resources).every((r) => resourceCovered(list(owner.resources), r))) return false;
  const ownerNames = list(owner.resourceNames);
  const names = list(servant.resourceNames);
  // A servant without names means every name: only an owner without names covers it.
  return ownerNames.length === 0 || (names.length > 0 && names.every((n) => ownerNames.includes(n)));
}

/** The parts of `servant` no owner rule covers (empty: the owner holds them all). */
export function uncovered(owner: PolicyRule[], servant: PolicyRule[]): PolicyRule[] {
  return servant.flatMap(breakdown).filter((s) => !owner.some((o) => ruleCovers(o, s)));
}

/** Go's %q of a []string: `["a" "b"]`. */
function quoted(values: string[]): string {
  return `[${values.map((v) => JSON.stringify(v)).join(" ")}]`;
}

/** rbacv1helpers.CompactString. */
export function compactString(r: PolicyRule): string {
  const parts: string[] = [];
  if (list(r.apiGroups).length) parts.push(`APIGroups:${quoted(list(r.apiGroups))}`);
  if (list(r.resources).length) parts.push(`Resources:${quoted(list(r.resources))}`);
  if (list(r.nonResourceURLs).length) parts.push(`NonResourceURLs:${quoted(list(r.nonResourceURLs))}`);
  if (list(r.resourceNames).length) parts.push(`ResourceNames:${quoted(list(r.resourceNames))}`);
  if (list(r.verbs).length) parts.push(`Verbs:${quoted(list(r.verbs))}`);
  return `{${parts.join(", ")}}`;
}

/** Broken-down rules merged back per group/resource/name (or url), verbs gathered, as CompactRules. */
export function compact(rules: PolicyRule[]): PolicyRule[] {
  const byKey = new Map<string, PolicyRule>();
  for (const r of rules) {
    const key = JSON.stringify([r.apiGroups, r.resources, r.resourceNames, r.nonResourceURLs]);
    const have = byKey.get(key);
    if (have)
      have.verbs = [...list(have.verbs), ...list(r.verbs).filter((v) => !list(have.verbs).includes(v))];
    else byKey.set(key, { ...r, verbs: [...list(r.verbs)] });
  }
  return [...byKey.values()];
}

/** Upstream's message for a grant beyond the writer's rights (sorted, one missing rule a line). */
export function escalationMessage(user: { name: string; groups: string[] }, missing: PolicyRule[]): string {
  const lines = [...new Set(compact(missing).map(compactString))].sort();
  return `user ${JSON.stringify(user.name)} (groups=${quoted(user.groups)}) is attempting to grant RBAC permissions not currently held:\n${lines.join("\n")}`;
}

/** `*` on everything: what writing an aggregated ClusterRole takes. */
export const FULL_AUTHORITY: PolicyRule[] = [
  { verbs: ["*"], apiGroups: ["*"], resources: ["*"] },
  { verbs: ["*"], nonResourceURLs: ["*"] },
];
