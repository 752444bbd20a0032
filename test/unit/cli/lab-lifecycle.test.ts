import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { labStart, labStop } from "../../../cli/lab-lifecycle.ts";
import { LabError } from "../../../topology/errors.ts";
import { silentReporter } from "../../../topology/progress.ts";

describe("lab start and lab stop of a lab that was never created", () => {
  let home: string;
  const saved = process.env.LAB_HOME;
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), "lab-lifecycle-"));
    process.env.LAB_HOME = home;
  });
  afterEach(async () => {
    if (saved === undefined) delete process.env.LAB_HOME;
    else process.env.LAB_HOME = saved;
    await rm(home, { recursive: true, force: true });
  });

  it("lab start says so and names `lab up` as the fix", async () => {
    const err = await labStart("never", silentReporter).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LabError);
    expect((err as LabError).code).toBe("LAB_NOT_CREATED");
    expect((err as LabError).what).toContain("lab never was never created");
    expect((err as LabError).fix).toContain("`lab up`");
  });

  it("lab stop says so too, and creates no state", async () => {
    const err = await labStop("never", silentReporter).catch((e: unknown) => e);
    expect((err as LabError).code).toBe("LAB_NOT_CREATED");
    expect((err as LabError).what).toContain("nothing to stop");
    expect(existsSync(join(home, "labs", "never"))).toBe(false);
  });
});
