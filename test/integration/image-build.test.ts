/** A failed image build leaves nothing in the cache: no half image, no temp directory. */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildImage } from "../../images/build.ts";
import { listImages } from "../../images/cache.ts";
import { DEBIAN_12 } from "../../images/recipe.ts";
import { RecordingReporter } from "../../topology/progress.ts";

let cacheDir = "";
afterAll(async () => {
  if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
});

describe("image build", () => {
  it("fails with a clear error when the mirror is unreachable, and leaves the cache empty", async () => {
    cacheDir = await mkdtemp(join(tmpdir(), "lab-image-fail-"));
    const reporter = new RecordingReporter();
    // Port 9 (discard) on loopback: nothing listens, debootstrap fails at once.
    const recipe = { ...DEBIAN_12, name: "broken", mirror: "http://127.0.0.1:9/debian" };
    await expect(buildImage(recipe, { reporter, cacheDir })).rejects.toMatchObject({
      code: "IMAGE_BUILD_FAILED",
      fix: expect.stringContaining("cache was left unchanged"),
    });
    expect(reporter.events).toContainEqual(
      expect.objectContaining({ step: "image.debootstrap", state: "failed" }),
    );
    expect(await listImages(cacheDir)).toEqual([]);
    expect((await readdir(cacheDir)).filter((f) => f !== ".debs")).toEqual([]);
  });
});
