import { describe, expect, it } from "vitest";
import { cidrRange, formatIPv4, ipv4ToNumber } from "../../../lib/ipv4.ts";
import { parseSize } from "../../../lib/quantity.ts";
import { IntRange } from "../../../lib/range.ts";
import { shq } from "../../../lib/shell.ts";
import { stableStringify } from "../../../lib/stable-json.ts";
import { microTime, timestamp } from "../../../lib/time.ts";

describe("lib", () => {
  it("reads lenient CIDRs with the host bits cleared, and rejects what is not one", () => {
    expect(cidrRange("10.96.0.7/12")).toEqual({ base: ipv4ToNumber("10.96.0.0"), size: 2 ** 20 });
    expect(cidrRange("10.0.0.0/31")).toBeUndefined();
    expect(cidrRange("300.0.0.0/16")).toBeUndefined();
    expect(formatIPv4(ipv4ToNumber("192.168.010.1")!)).toBe("192.168.10.1");
  });

  it("hands out free members of a range from an offset, wrapping round", () => {
    const r = new IntRange(5, 9);
    expect([...r.free(new Set([6, 8]), 2)]).toEqual([7, 9, 5]);
    expect(r.contains(9)).toBe(true);
    expect(r.contains(10)).toBe(false);
  });

  it("keeps the topology's narrow size grammar", () => {
    expect(parseSize("2Gi")).toBe(2 * 2 ** 30);
    expect(parseSize("500m")).toMatch(/is not a size/);
  });

  it("quotes, hashes and stamps as before", () => {
    expect(shq("it's")).toBe(`'it'\\''s'`);
    expect(stableStringify({ b: 1, a: [undefined, { d: undefined, c: 2 }] })).toBe(
      '{"a":[null,{"c":2}],"b":1}',
    );
    expect(timestamp(Date.UTC(2024, 0, 2, 3, 4, 5, 678))).toBe("2024-01-02T03:04:05Z");
    expect(microTime(Date.UTC(2024, 0, 2, 3, 4, 5, 678))).toBe("2024-01-02T03:04:05.678000Z");
  });
});
