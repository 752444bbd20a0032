/** The project's own OCI images: byte-for-byte reproducible, and valid for a standard OCI tool. */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildImageArchive, PAUSE, SAMPLE } from "../../images/oci/build.ts";

const run = promisify(execFile);
const sha = async (f: string): Promise<string> =>
  createHash("sha256")
    .update(await readFile(f))
    .digest("hex");

describe("OCI images built from busybox-static", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "lab-oci-test-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("builds the same archive twice, byte for byte", async () => {
    await buildImageArchive(SAMPLE, join(dir, "a.tar"));
    await buildImageArchive(SAMPLE, join(dir, "b.tar"));
    expect(await sha(join(dir, "a.tar"))).toBe(await sha(join(dir, "b.tar")));
  });

  it("produces archives skopeo reads, with the entrypoint and name we set", async () => {
    await buildImageArchive(PAUSE, join(dir, "pause.tar"));
    const { stdout } = await run("skopeo", ["inspect", "--config", `oci-archive:${join(dir, "pause.tar")}`]);
    const config = JSON.parse(stdout);
    expect(config.config.Entrypoint).toEqual(["/bin/sleep", "infinity"]);
    expect(config.os).toBe("linux");
    const index = JSON.parse((await run("tar", ["-xOf", join(dir, "pause.tar"), "index.json"])).stdout);
    expect(index.manifests[0].annotations["io.containerd.image.name"]).toBe(PAUSE.name);
  });
});
