import { createHmac } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  hypervisorJump,
  knownHostKeys,
  knownHostsName,
  parseRemoteUri,
} from "../../../../provisioners/libvirt/remote.ts";
import { jumpFingerprint } from "../../../../ssh/jump.ts";

const ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq2b0ZkY4o1xS0z0Hc8c7q0v0Jr8b7h3cX8m9bqk1aZ";
const RSA = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7";

describe("remote libvirt URIs", () => {
  it("reads user, host, port, keyfile, known_hosts and no_verify of SSH transports", () => {
    expect(
      parseRemoteUri("qemu+ssh://admin@hv1.home:2222/system?keyfile=%2Fk%2Fid&known_hosts=/kh&no_verify=0"),
    ).toEqual({
      transport: "ssh",
      user: "admin",
      host: "hv1.home",
      port: 2222,
      keyfile: "/k/id",
      knownHosts: "/kh",
      noVerify: false,
    });
    expect(parseRemoteUri("qemu+libssh://hv1/system?no_verify=1")).toMatchObject({
      transport: "libssh",
      user: undefined,
      port: 22,
      noVerify: true,
    });
  });

  it("has no SSH part for local URIs and other transports", () => {
    expect(parseRemoteUri("qemu:///system")).toBeUndefined();
    expect(parseRemoteUri("qemu+tcp://hv1/system")).toBeUndefined();
    expect(parseRemoteUri("not a uri")).toBeUndefined();
  });
});

describe("known_hosts lookup", () => {
  it("finds plain, bracketed and hashed entries, and skips negations and markers", () => {
    const salt = Buffer.from("0123456789abcdefghij");
    const hashed = (name: string) =>
      `|1|${salt.toString("base64")}|${createHmac("sha1", salt).update(name).digest("base64")}`;
    const text = [
      `# comment`,
      `hv1,10.0.0.5 ${ED}`,
      `[hv1]:2222 ${RSA}`,
      `${hashed("[hv2]:2200")} ${ED}`,
      `@revoked hv3 ${ED}`,
      `*,!hv4 ${RSA}`,
    ].join("\n");
    expect(knownHostsName("hv1", 22)).toBe("hv1");
    expect(knownHostKeys(text, "hv1", 22)).toEqual([ED]);
    expect(knownHostKeys(text, "hv1", 2222)).toEqual([RSA]);
    expect(knownHostKeys(text, "hv2", 2200)).toEqual([ED]);
    expect(knownHostKeys(text, "hv2", 22)).toEqual([]);
    expect(knownHostKeys(text, "hv3", 22)).toEqual([]);
    expect(knownHostKeys(text, "hv4", 22)).toEqual([]);
  });
});

describe("the jump to a remote hypervisor", () => {
  it("pins the known_hosts key, prefers ed25519, and refuses an unknown host or no_verify", async () => {
    const dir = await mkdtemp(join(tmpdir(), "lab-remote-unit-"));
    try {
      const kh = join(dir, "known_hosts");
      await writeFile(kh, `[hv1]:2222 ${RSA}\n[hv1]:2222 ${ED}\n`);
      const key = join(dir, "id");
      await writeFile(key, "x");
      const remote = parseRemoteUri(`qemu+ssh://root@hv1:2222/system?keyfile=${key}&known_hosts=${kh}`)!;
      expect(await hypervisorJump(remote)).toEqual({
        host: "hv1",
        port: 2222,
        user: "root",
        privateKeyPath: key,
        hostKey: ED,
      });
      // A fingerprint in the topology wins over known_hosts.
      const fp = jumpFingerprint(ED);
      expect((await hypervisorJump(remote, "SHA256:" + "A".repeat(43))).hostKey).toBe(
        "SHA256:" + "A".repeat(43),
      );
      expect(fp).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
      await expect(
        hypervisorJump(parseRemoteUri(`qemu+ssh://root@hv9/system?known_hosts=${kh}`)!),
      ).rejects.toMatchObject({ code: "HYPERVISOR_HOST_KEY_UNKNOWN", where: "spec.provider.uri" });
      await expect(
        hypervisorJump(parseRemoteUri(`qemu+ssh://root@hv1:2222/system?known_hosts=${kh}&no_verify=1`)!),
      ).rejects.toMatchObject({ code: "HYPERVISOR_HOST_KEY_UNVERIFIED" });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
