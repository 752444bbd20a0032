import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { createTestHosts, type TestHosts, testMachine } from "../support/ssh-hosts.ts";
import { readdir, readFile, stat } from "node:fs/promises";
import { collectMachineLogs } from "../../bootstrap/logs.ts";
import { sha256, sha256OfFile } from "../../lib/digest.ts";
import { fingerprintOfBlob } from "../../ssh/host-key.ts";
import { SshSession } from "../../ssh/session.ts";
import { SHA256_SIDECAR } from "../../ssh/upload.ts";
import type { Machine } from "../../provisioners/provisioner.ts";
import { fingerprint } from "../../provisioners/keys.ts";
import { LabError } from "../../topology/errors.ts";

let env: TestHosts;

beforeAll(async () => {
  env = await createTestHosts(1);
});
afterAll(async () => {
  await env?.destroy();
});

function machine(over: Partial<Machine["ssh"]> = {}): Machine {
  return testMachine(env, over);
}

describe("SshSession against a real sshd in a network namespace", () => {
  it("runs commands and reports stdout, stderr and the exit code", async () => {
    const s = await SshSession.connect(machine());
    try {
      const r = await s.exec("echo out; echo err >&2; exit 3");
      expect(r).toEqual({ stdout: "out\n", stderr: "err\n", code: 3 });
      expect((await s.exec("id -un")).stdout.trim()).toBe(env.sudoUser);
      const stdin = await s.exec("cat", { stdin: "fed through stdin" });
      expect(stdin.stdout).toBe("fed through stdin");
    } finally {
      s.close();
    }
  });

  it("times out and cancels long commands", async () => {
    const s = await SshSession.connect(machine());
    try {
      const t0 = Date.now();
      await expect(s.exec("sleep 31", { timeoutMs: 500 })).rejects.toMatchObject({ code: "SSH_TIMEOUT" });
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 300);
      await expect(s.exec("sleep 3", { signal: ac.signal })).rejects.toMatchObject({ code: "ABORTED" });
      expect(Date.now() - t0).toBeLessThan(5_000);
      // The remote command is gone too (the remote side enforces the timeout).
      await new Promise((r) => setTimeout(r, 2500));
      expect((await s.exec("pgrep -u $(id -u) -fx 'sleep 31' || true")).stdout.trim()).toBe("");
      // The session is still usable afterwards.
      expect((await s.exec("echo alive")).stdout).toBe("alive\n");
    } finally {
      s.close();
    }
  });

  it("runs commands as root with sudo, and a non-zero exit is a clear error", async () => {
    const s = await SshSession.connect(machine());
    try {
      expect((await s.sudo("id -u")).stdout.trim()).toBe("0");
      await expect(s.run("echo boom >&2; false", { root: true })).rejects.toThrow(
        /failed on node-a \(exit 1\): boom/,
      );
    } finally {
      s.close();
    }
    const plain = await SshSession.connect(machine({ user: env.plainUser }));
    try {
      expect((await plain.sudo("true")).code).not.toBe(0);
    } finally {
      plain.close();
    }
  });

  it("uploads over SFTP as root with mode and owner, verified by sha256, and skips an identical file", async () => {
    const s = await SshSession.connect(machine());
    const path = `${env.dir}/up-${randomBytes(3).toString("hex")}/pki/secret.key`;
    try {
      const data = randomBytes(256 * 1024);
      expect(await s.upload({ data }, path, { mode: 0o600 })).toBe("uploaded");
      expect(await s.remoteSha256(path)).toBe(sha256(data));
      expect((await s.run(`stat -c '%a %U' ${path}`, { root: true })).trim()).toBe("600 root");
      // The login user cannot read a 0600 root file.
      expect((await s.exec(`cat ${path}`)).code).not.toBe(0);
      const mtime = (await s.run(`stat -c %Y.%i ${path}`, { root: true })).trim();
      await new Promise((r) => setTimeout(r, 1100));
      expect(await s.upload({ data }, path, { mode: 0o600 })).toBe("unchanged");
      expect((await s.run(`stat -c %Y.%i ${path}`, { root: true })).trim()).toBe(mtime);
      const changed = Buffer.concat([data, Buffer.from("x")]);
      expect(await s.upload({ data: changed }, path, { mode: 0o640 })).toBe("uploaded");
      expect(await s.remoteSha256(path)).toBe(sha256(changed));
      expect((await s.run(`stat -c '%a' ${path}`, { root: true })).trim()).toBe("640");
    } finally {
      s.close();
    }
  });

  it("uploads many small files in one round trip, only those that differ", async () => {
    const s = await SshSession.connect(machine());
    const dir = `${env.dir}/many-${randomBytes(3).toString("hex")}`;
    try {
      const items: { source: { data: string | Buffer }; remotePath: string; mode: number }[] = [1, 2, 3].map(
        (i) => ({ source: { data: `file ${i}\n` }, remotePath: `${dir}/sub/f${i}`, mode: 0o600 }),
      );
      const binary = randomBytes(100_000);
      items.push({ source: { data: binary }, remotePath: `${dir}/bin/blob`, mode: 0o644 });
      const before = s.execs;
      expect(await s.uploadMany(items)).toEqual(items.map((i) => i.remotePath));
      expect(s.execs - before).toBe(1);
      expect(await s.remoteSha256(`${dir}/bin/blob`)).toBe(sha256(binary));
      // directories made on the way are traversable, as with mkdir -p (daemons running as their own
      // user read their files below them)
      expect((await s.run(`stat -c '%a' ${dir}/bin ${dir}/sub`, { root: true })).trim().split("\n")).toEqual([
        "755",
        "755",
      ]);
      expect((await s.run(`stat -c '%a' ${dir}/bin/blob`, { root: true })).trim()).toBe("644");
      expect(await s.run(`cat ${dir}/sub/f2`, { root: true })).toBe("file 2\n");
      expect((await s.run(`stat -c '%a %U' ${dir}/sub/f3`, { root: true })).trim()).toBe("600 root");
      await s.run(`chmod 644 ${dir}/sub/f1`, { root: true });
      expect(await s.uploadMany(items)).toEqual([]);
      expect((await s.run(`stat -c '%a' ${dir}/sub/f1`, { root: true })).trim()).toBe("600");
      items[1]!.source = { data: "changed\n" };
      expect(await s.uploadMany(items)).toEqual([`${dir}/sub/f2`]);
      expect(await s.run(`cat ${dir}/sub/f2`, { root: true })).toBe("changed\n");
    } finally {
      await s.run(`rm -rf ${dir}`, { root: true }).catch(() => undefined);
      s.close();
    }
  });

  it("streams a large local file (the Node runtime) and verifies it", async () => {
    const s = await SshSession.connect(machine());
    const path = `${env.dir}/runtime-${randomBytes(3).toString("hex")}/node`;
    try {
      const t0 = Date.now();
      expect(await s.upload({ file: process.execPath }, path, { mode: 0o755 })).toBe("uploaded");
      const took = Date.now() - t0;
      expect(await s.remoteSha256(path)).toBe(await sha256OfFile(process.execPath));
      expect((await s.run(`${path} -e 'process.stdout.write(String(1 + 1))'`)).trim()).toBe("2");
      expect(await s.upload({ file: process.execPath }, path, { mode: 0o755 })).toBe("unchanged");
      // The verified hash is recorded beside the file, so a rerun does not hash 99 MB again ...
      const sidecar = (await s.run(`cat ${path}${SHA256_SIDECAR}`)).split(" ");
      expect(sidecar[0]).toBe(await sha256OfFile(process.execPath));
      // ... but only while the file is the one that was verified: a rewrite in place (same size,
      // new mtime) is hashed again and replaced.
      await s.run(
        `printf 'XXXX' | dd of=${path} bs=1 seek=0 conv=notrunc status=none && touch -d '+2 seconds' ${path}`,
        {
          root: true,
        },
      );
      expect(await s.upload({ file: process.execPath }, path, { mode: 0o755 })).toBe("uploaded");
      expect(await s.remoteSha256(path)).toBe(await sha256OfFile(process.execPath));
      console.log(
        `uploaded the ${Math.round((await stat(process.execPath)).size / 1e6)} MB Node runtime in ${took} ms`,
      );
    } finally {
      s.close();
    }
  });

  it("collects every machine's logs, and says why for a machine it cannot reach", async () => {
    const out = `${env.dir}/logs-${randomBytes(3).toString("hex")}`;
    const good = machine();
    const bad: Machine = { ...machine({ port: 2 }), name: "node-b" };
    const r = await collectMachineLogs([good, bad], out);
    expect(r).toEqual({ collected: ["node-a"], failed: ["node-b"] });
    expect(await readdir(`${out}/node-a`)).toEqual(
      expect.arrayContaining(["units.txt", "lab-etcd.log", "network.txt"]),
    );
    expect(await readFile(`${out}/node-a/network.txt`, "utf8")).toContain(env.hosts[0]!.address);
    expect(await readFile(`${out}/node-b/error.txt`, "utf8")).toMatch(/cannot connect to node-b/);
  });

  it("refuses a host whose key differs from the pin, naming both fingerprints", async () => {
    const other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx3t1ndLsH5yqI4GqNvv0x1pZ4Hn1pW4o2a8oCwb2VG other";
    const expected = await fingerprint(other);
    const seen = await fingerprint(env.hosts[0]!.hostPublicKey);
    const err = await SshSession.connect(machine({ hostKey: other })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LabError);
    expect((err as LabError).code).toBe("HOST_KEY_MISMATCH");
    expect((err as LabError).message).toContain(`expected ${expected}, seen ${seen}`);
    // A fingerprint pin works the same as a full key.
    const ok = await SshSession.connect(machine({ hostKey: seen }));
    expect(ok.seenHostKey).toBe(seen);
    ok.close();
  });

  it("accepts an unpinned key only when told to, and reports what it saw", async () => {
    const refused = await SshSession.connect(machine({ hostKey: "" })).catch((e: unknown) => e);
    expect((refused as LabError).code).toBe("HOST_KEY_UNKNOWN");
    const s = await SshSession.connect(machine({ hostKey: "" }), { acceptNewHostKey: true });
    const blob = Buffer.from(env.hosts[0]!.hostPublicKey.split(" ")[1]!, "base64");
    expect(s.seenHostKey).toBe(fingerprintOfBlob(blob));
    s.close();
  });
});
