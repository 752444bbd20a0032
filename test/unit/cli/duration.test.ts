import { describe, expect, it } from "vitest";
import { parseDuration } from "../../../cli/duration.ts";

describe("lab up --wait DURATION", () => {
  it.each([
    ["90s", 90_000],
    ["5m", 300_000],
    ["1m30s", 90_000],
    ["1h", 3_600_000],
    ["1500ms", 1_500],
  ])("reads the units kind accepts: %s", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
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
