/**
 * `lab image load` against a real sshd (its own network namespace) and a real containerd: the
 * archive is uploaded over SFTP and imported into containerd's k8s.io namespace, where CRI sees it;
 * an unreachable node fails alone, with its reason.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkImageArchive, loadImageArchive } from "../../bootstrap/image-load.ts";
import { buildImageArchive } from "../../images/oci/build.ts";
import type { Machine } from "../../provisioners/provisioner.ts";
import { RecordingReporter } from "../../topology/progress.ts";
import { createTestHosts, type TestHosts } from "../support/ssh-hosts.ts";
import { startTestNode, type TestNode } from "./agent-node.ts";

const IMAGE = "docker.io/lab/loaded:v1";
let env: TestHosts;
let node: TestNode;
let dir: string;
let archive: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lab-image-load-"));
  archive = join(dir, "loaded.tar");
  [env, node] = await Promise.all([
    createTestHosts(1),
    startTestNode(),
    buildImageArchive({ name: IMAGE, entrypoint: ["/bin/sleep", "3600"] }, archive),
  ]);
}, 120_000);

afterAll(async () => {
  await node?.destroy();
  await env?.destroy();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

function machine(name: string, port?: number): Machine {
  const h = env.hosts[0]!;
  return {
    name,
    role: "worker",
    address: h.address,
    ssh: {
      host: h.address,
      port: port ?? h.port,
      user: env.sudoUser,
      privateKeyPath: env.clientKeyPath,
      hostKey: h.hostPublicKey,
    },
  };
}

describe("lab image load", () => {
  it("imports the archive into the node's containerd, where CRI finds it; a dead node fails alone", async () => {
    expect(await checkImageArchive(archive)).toMatchObject({ kind: "oci" });
    expect(await node.cri.imageStatus(IMAGE)).toBeUndefined();
    const reporter = new RecordingReporter();
    const results = await loadImageArchive({
      machines: [machine("node-a"), machine("node-dead", 1)],
      file: archive,
      reporter,
      containerdSocket: node.socket,
      remoteDir: join(dir, "remote"),
    });
    const ok = results.find((r) => r.node === "node-a")!;
    expect(ok).toMatchObject({ ok: true, images: [IMAGE] });
    expect(await node.cri.imageStatus(IMAGE)).toBeDefined();
    const dead = results.find((r) => r.node === "node-dead")!;
    expect(dead.ok).toBe(false);
    expect(dead.error).toMatch(/cannot connect/);
    // progress per node: start then done / failed
    expect(reporter.events.filter((e) => e.node === "node-a").map((e) => e.state)).toEqual(["start", "done"]);
    expect(reporter.events.filter((e) => e.node === "node-dead").map((e) => e.state)).toEqual([
      "start",
      "failed",
    ]);
  }, 60_000);
});
