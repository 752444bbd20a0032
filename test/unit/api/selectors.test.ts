import { describe, expect, it } from "vitest";
import {
  matchesFields,
  matchesLabels,
  parseFieldSelector,
  parseLabelSelector,
  selectorObjectToString,
} from "../../../api/selectors.ts";

describe("label selectors", () => {
  const labels = { app: "web", tier: "front" };
  const cases: [string, boolean][] = [
    ["app=web", true],
    ["app==web", true],
    ["app!=web", false],
    ["app!=db", true],
    ["tier in (front, back)", true],
    ["tier notin (front)", false],
    ["tier", true],
    ["!tier", false],
    ["!missing", true],
    ["missing!=x", true],
    ["app=web,tier in (back)", false],
    ["", true],
  ];
  for (const [sel, want] of cases) {
    it(`"${sel}" → ${want}`, () => expect(matchesLabels(parseLabelSelector(sel), labels)).toBe(want));
  }
  it("rejects malformed selectors", () => {
    expect(() => parseLabelSelector("app in web")).toThrow(/unable to parse/);
  });
  it("renders LabelSelector objects", () => {
    expect(
      selectorObjectToString({
        matchLabels: { app: "web" },
        matchExpressions: [{ key: "t", operator: "In", values: ["a", "b"] }],
      }),
    ).toBe("app=web,t in (a,b)");
  });
});

describe("field selectors", () => {
  const pod = {
    metadata: { name: "p", namespace: "ns" },
    spec: { nodeName: "n1" },
    status: { phase: "Running" },
  };
  it("matches the supported fields", () => {
    expect(matchesFields(parseFieldSelector("spec.nodeName=n1,status.phase!=Failed"), pod)).toBe(true);
    expect(matchesFields(parseFieldSelector("metadata.namespace==other"), pod)).toBe(false);
    expect(matchesFields(parseFieldSelector("spec.nodeName="), { spec: {} })).toBe(true);
  });
  it("names unsupported fields", () => {
    expect(() => parseFieldSelector("spec.bogus=1")).toThrow(/field label not supported: spec.bogus/);
  });
});
