/**
 * Machines behind a jump host (how `lab` reaches VMs on a remote hypervisor's lab network): a real
 * sshd in a network namespace, reached only through a second real sshd on loopback that forwards
 * to it. The bootstrap's SshSession and the ssh-ready check both go through the jump, with both
 * host keys pinned, and a wrong jump host key stops them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SshSession } from "../../ssh/session.ts";
import { generateEd25519 } from "../../provisioners/keys.ts";
import type { Machine } from "../../provisioners/provisioner.ts";
import type { SshJump } from "../../ssh/endpoint.ts";
import { JumpPool } from "../../ssh/jump.ts";
import { waitSshReady } from "../../ssh/ready.ts";
import { startLoopbackHypervisor, type LoopbackHypervisor } from "../support/loopback-sshd.ts";
import { createTestHosts, type TestHosts, testMachine } from "../support/ssh-hosts.ts";

let hosts: TestHosts | undefined;
let hv: LoopbackHypervisor | undefined;

beforeAll(async () => {
  hosts = await createTestHosts(1);
  hv = await startLoopbackHypervisor();
});
afterAll(async () => {
  await hv?.stop();
  await hosts?.destroy();
});

const jump = (over: Partial<SshJump> = {}): SshJump => ({
  host: "127.0.0.1",
  port: hv!.port,
  user: "root",
  privateKeyPath: hv!.clientKeyPath,
  hostKey: hv!.hostPublicKey,
  ...over,
});

function machine(j: SshJump): Machine {
  return testMachine(hosts!, { jump: j });
}

describe("SSH through a jump host", () => {
  it("runs commands and uploads on the machine behind the jump, through the jump's sshd", async () => {
    const s = await SshSession.connect(machine(jump()));
    try {
      expect((await s.exec("id -un")).stdout.trim()).toBe(hosts!.sudoUser);
      expect(await s.upload({ data: "through the jump\n" }, "/var/tmp/lab-jump-test")).toBe("uploaded");
      expect((await s.sudo("cat /var/tmp/lab-jump-test; rm -f /var/tmp/lab-jump-test")).stdout).toBe(
        "through the jump\n",
      );
    } finally {
      s.close();
    }
    expect(await hv!.log()).toContain(`target ${hosts!.hosts[0]!.address} port 22`);
  });

  it("sessions sharing a JumpPool log into the jump host once, and it outlives each session", async () => {
    const logins = async () => ((await hv!.log()).match(/Accepted publickey for root/g) ?? []).length;
    const before = await logins();
    const jumps = new JumpPool();
    try {
      const a = await SshSession.connect(machine(jump()), { jumps });
      const b = await SshSession.connect(machine(jump()), { jumps });
      a.close();
      expect((await b.exec("echo still")).stdout).toBe("still\n");
      b.close();
      const c = await SshSession.connect(machine(jump()), { jumps });
      expect((await c.exec("true")).code).toBe(0);
      c.close();
    } finally {
      await jumps.close();
    }
    expect((await logins()) - before).toBe(1);
  });

  it("ssh-ready succeeds through the jump", async () => {
    const m = machine(jump());
    const ms = await waitSshReady({ node: m.name, ...m.ssh }, { timeoutMs: 20_000 });
    expect(ms).toBeLessThan(20_000);
  });

  it("refuses a jump host whose key is not the pinned one, at once", async () => {
    const other = (await generateEd25519("not-the-hypervisor")).publicKey;
    await expect(SshSession.connect(machine(jump({ hostKey: other })))).rejects.toMatchObject({
      code: "HOST_KEY_MISMATCH",
    });
    const m = machine(jump({ hostKey: other }));
    const t0 = Date.now();
    await expect(waitSshReady({ node: m.name, ...m.ssh }, { timeoutMs: 15_000 })).rejects.toThrow(
      /not the pinned one/,
    );
    expect(Date.now() - t0).toBeLessThan(10_000);
  });
});
