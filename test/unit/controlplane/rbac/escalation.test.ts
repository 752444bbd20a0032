import { describe, expect, it } from "vitest";
import {
  breakdown,
  compactString,
  escalationMessage,
  FULL_AUTHORITY,
  ruleCovers,
  uncovered,
} from "../../../../controlplane/rbac/escalation.ts";

describe("escalation checks (upstream's Covers)", () => {
  it("breaks a rule into one group/resource/verb (and name) each", () => {
    expect(breakdown({ apiGroups: ["", "apps"], resources: ["pods"], verbs: ["get", "list"] })).toHaveLength(
      4,
    );
    expect(
      breakdown({ apiGroups: [""], resources: ["cm"], resourceNames: ["a", "b"], verbs: ["get"] }),
    ).toEqual([
      { apiGroups: [""], resources: ["cm"], resourceNames: ["a"], verbs: ["get"] },
      { apiGroups: [""], resources: ["cm"], resourceNames: ["b"], verbs: ["get"] },
    ]);
    expect(breakdown({ nonResourceURLs: ["/a", "/b"], verbs: ["get"] })).toHaveLength(2);
  });

  it("covers by wildcard, exact value, subresource wildcards and resource names", () => {
    const get = (resource: string, extra: object = {}) => ({
      apiGroups: [""],
      resources: [resource],
      verbs: ["get"],
      ...extra,
    });
    expect(ruleCovers({ apiGroups: ["*"], resources: ["*"], verbs: ["*"] }, get("pods"))).toBe(true);
    expect(ruleCovers({ apiGroups: [""], resources: ["pods"], verbs: ["list"] }, get("pods"))).toBe(false);
    expect(ruleCovers({ apiGroups: ["apps"], resources: ["pods"], verbs: ["get"] }, get("pods"))).toBe(false);
    expect(ruleCovers({ apiGroups: [""], resources: ["pods/*"], verbs: ["get"] }, get("pods/log"))).toBe(
      true,
    );
    expect(ruleCovers({ apiGroups: [""], resources: ["*/scale"], verbs: ["get"] }, get("rc/scale"))).toBe(
      true,
    );
    expect(ruleCovers({ apiGroups: [""], resources: ["pods"], verbs: ["get"] }, get("pods/log"))).toBe(false);
    const named = { apiGroups: [""], resources: ["cm"], resourceNames: ["a"], verbs: ["get"] };
    expect(ruleCovers(named, get("cm", { resourceNames: ["a"] }))).toBe(true);
    expect(ruleCovers(named, get("cm", { resourceNames: ["b"] }))).toBe(false);
    expect(ruleCovers(named, get("cm"))).toBe(false);
    expect(
      ruleCovers(
        { nonResourceURLs: ["/apis/*"], verbs: ["get"] },
        { nonResourceURLs: ["/apis/x"], verbs: ["get"] },
      ),
    ).toBe(true);
    expect(
      ruleCovers(
        { nonResourceURLs: ["/apis"], verbs: ["get"] },
        { nonResourceURLs: ["/apis/x"], verbs: ["get"] },
      ),
    ).toBe(false);
  });

  it("names what is missing in upstream's words", () => {
    const owner = [{ apiGroups: [""], resources: ["pods"], verbs: ["get", "list"] }];
    expect(uncovered(owner, [{ apiGroups: [""], resources: ["pods"], verbs: ["get"] }])).toEqual([]);
    const missing = uncovered(owner, [
      { apiGroups: [""], resources: ["pods"], verbs: ["get", "delete", "create"] },
      ...FULL_AUTHORITY.slice(1),
    ]);
    expect(missing).toHaveLength(3);
    expect(
      compactString({ apiGroups: ["apps"], resources: ["deployments"], verbs: ["create", "delete"] }),
    ).toBe('{APIGroups:["apps"], Resources:["deployments"], Verbs:["create" "delete"]}');
    expect(escalationMessage({ name: "bob", groups: ["team", "system:authenticated"] }, missing)).toBe(
      'user "bob" (groups=["team" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n' +
        '{APIGroups:[""], Resources:["pods"], Verbs:["delete" "create"]}\n' +
        '{NonResourceURLs:["*"], Verbs:["*"]}',
    );
  });
});
