import { describe, expect, it } from "vitest";
import { parseDuration } from "../../../cli/duration.ts";

describe("lab up --wait DURATION", () => {
  it("reads the units kind accepts", () => {
    expect(parseDuration("90s")).toBe(90_000);
    expect(parseDuration("5m")).toBe(300_000);
    expect(parseDuration("1m30s")).toBe(90_000);
    expect(parseDuration("1h")).toBe(3_600_000);
    expect(parseDuration("1500ms")).toBe(1_500);
  });
  it("refuses what is not a positive duration, with an example in the fix", () => {
    for (const bad of ["", "5", "abc", "0s", "-5m", "5 minutes"]) {
      expect(() => parseDuration(bad)).toThrow(/is not a duration/);
    }
    try {
      parseDuration("5");
    } catch (err) {
      expect((err as { fix?: string }).fix).toContain("--wait 5m");
    }
  });
});
