/**
 * The rerun probe for real: files uploaded over SSH as the bootstrap does, a marker written with
 * writeMarkerCommand, then the probe script run as root through sudo on a real sshd (network
 * namespace test host) and judged by staleReason, before and after the files drift.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { arch, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  emptyWork,
  fingerprintOf,
  parseProbe,
  probeScript,
  renderMarker,
  staleReason,
  writeMarkerCommand,
  type NodeWork,
} from "../../bootstrap/applied.ts";
import { sha256 } from "../../lib/digest.ts";
import { SshSession } from "../../ssh/session.ts";
import type { Machine } from "../../provisioners/provisioner.ts";
import { createTestHosts, type TestHosts, testMachine } from "../support/ssh-hosts.ts";

let env: TestHosts;
let local: string;
beforeAll(async () => {
  env = await createTestHosts(1);
  local = await mkdtemp(join(tmpdir(), "lab-applied-"));
});
afterAll(async () => {
  await env?.destroy();
  if (local) await rm(local, { recursive: true, force: true });
});

function machine(): Machine {
  return testMachine(env);
}

describe("applied markers on a real host", () => {
  it("a step whose files are intact is skipped; an edited file, a chmod or a replaced upload makes it run", async () => {
    const s = await SshSession.connect(machine());
    const root = `${env.dir}/applied-${randomBytes(3).toString("hex")}`;
    const applied = `${root}/var/lib/lab/applied`;
    try {
      const big = join(local, "runtime");
      const bytes = randomBytes(300 * 1024);
      await writeFile(big, bytes);
      const work: NodeWork = {
        ...emptyWork(),
        files: [
          { path: `${root}/etc/lab/pki/node.key`, data: "KEY\n", mode: 0o600 },
          { path: `${root}/etc/lab/agent.conf`, data: "conf\n" },
        ],
        uploads: [{ path: `${root}/opt/lab/bin/node`, sha256: sha256(bytes), mode: 0o755 }],
        inputs: { arch: arch() },
      };
      await s.uploadMany([
        ...work.files.map((f) => ({ source: { data: f.data }, remotePath: f.path, mode: f.mode })),
        { source: { file: big }, remotePath: work.uploads[0]!.path, mode: 0o755 },
      ]);
      const fp = fingerprintOf("demo", "v1", work);
      await s.run(writeMarkerCommand("demo", renderMarker(fp, work), applied), { root: true });
      const probe = async () => {
        const sentAt = Date.now();
        const out = await s.run(probeScript(applied), { root: true });
        return parseProbe(out, sentAt, Date.now());
      };

      const facts = await probe();
      expect(facts.applied.get("demo")).toBe(fp);
      expect(facts.arch).toBe((await s.run("uname -m")).trim());
      expect(facts.clockOffsetS).toBe(0);
      expect(facts.addresses).toContain(env.hosts[0]!.address);
      expect(staleReason("demo", fp, work, facts)).toBeUndefined();
      // Another version of the step (or topology) would apply something else: it runs.
      expect(staleReason("demo", fingerprintOf("demo", "v2", work), work, facts)).toBe(
        "what it applies changed",
      );

      await s.run(`echo edited >> ${work.files[1]!.path}`, { root: true });
      expect(staleReason("demo", fp, work, await probe())).toBe(`${work.files[1]!.path} changed`);
      await s.run(`printf 'conf\\n' > ${work.files[1]!.path}`, { root: true });
      expect(staleReason("demo", fp, work, await probe())).toBeUndefined();

      await s.run(`chmod 644 ${work.files[0]!.path}`, { root: true });
      expect(staleReason("demo", fp, work, await probe())).toBe(
        `${work.files[0]!.path} has mode 644 owner root:root`,
      );
      await s.run(`chmod 600 ${work.files[0]!.path}`, { root: true });

      // Replaced behind lab's back: a new inode, so the sidecar no longer vouches for it.
      await s.run(`cp ${work.uploads[0]!.path} ${root}/x && mv ${root}/x ${work.uploads[0]!.path}`, {
        root: true,
      });
      expect(staleReason("demo", fp, work, await probe())).toBe(`${work.uploads[0]!.path} changed`);

      // Running the step again hashes it once, records a new sidecar, and the result stands again.
      expect(
        await s.uploadMany([{ source: { file: big }, remotePath: work.uploads[0]!.path, mode: 0o755 }]),
      ).toEqual([]);
      expect(staleReason("demo", fp, work, await probe())).toBeUndefined();

      // A unit the probe cannot find active (this host has no systemd) never counts as running.
      const withUnit = { ...work, units: ["lab-demo.service"] };
      const fp2 = fingerprintOf("demo", "v1", withUnit);
      await s.run(writeMarkerCommand("demo", renderMarker(fp2, withUnit), applied), { root: true });
      expect(staleReason("demo", fp2, withUnit, await probe())).toMatch(/^lab-demo\.service is /);
    } finally {
      await s.run(`rm -rf ${root}`, { root: true }).catch(() => undefined);
      s.close();
    }
  });
});
