/**
 * SSH test hosts: one network namespace per host, a veth pair to the host namespace, and a real
 * sshd (-D, temp config, temp ed25519 host key) inside it. Users are real local accounts made for
 * the test (one with passwordless sudo, one without), removed again by `destroy`.
 */
import { execa, type ResultPromise } from "execa";
import { mkdtemp, readFile, rm, writeFile, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { generateEd25519 } from "../../provisioners/keys.ts";
import type { Machine } from "../../provisioners/provisioner.ts";

export interface TestHost {
  name: string;
  netns: string;
  address: string;
  port: number;
  hostPublicKey: string;
}

export interface TestHosts {
  dir: string;
  hosts: TestHost[];
  clientKeyPath: string;
  sudoUser: string;
  plainUser: string;
  destroy(): Promise<void>;
}

async function sh(cmd: string[]): Promise<void> {
  await execa(cmd[0]!, cmd.slice(1));
}

export async function createTestHosts(count: number): Promise<TestHosts> {
  const tag = randomBytes(3).toString("hex");
  const dir = await mkdtemp(join(tmpdir(), "lab-ssh-hosts-"));
  const hosts: TestHost[] = [];
  const daemons: ResultPromise[] = [];
  const sudoUser = `lbs${tag}`;
  const plainUser = `lbp${tag}`;
  // Third octet from the tag so parallel runs (other engineers) do not collide.
  const octet = 16 + (parseInt(tag.slice(0, 2), 16) % 200);
  const cleanup = async () => {
    for (const d of daemons) d.kill("SIGTERM");
    await Promise.allSettled(daemons);
    for (const h of hosts) await execa("ip", ["netns", "del", h.netns], { reject: false });
    for (let i = 0; i < count; i++) await execa("ip", ["link", "del", `lt${tag}h${i}`], { reject: false });
    for (const u of [sudoUser, plainUser]) await execa("userdel", ["-f", u], { reject: false });
    await rm(`/etc/sudoers.d/lab-test-${tag}`, { force: true });
    if (process.env.LAB_KEEP_TEST_HOSTS) console.error(`kept ${dir}`);
    else await rm(dir, { recursive: true, force: true });
  };
  try {
    const client = await generateEd25519("lab-test-client");
    const clientKeyPath = join(dir, "client_key");
    await writeFile(clientKeyPath, client.privateKey, { mode: 0o600 });
    const authorized = join(dir, "authorized_keys");
    await writeFile(authorized, client.publicKey + "\n", { mode: 0o644 });
    for (const u of [sudoUser, plainUser]) {
      await sh(["useradd", "-M", "-d", dir, "-s", "/bin/sh", u]);
      // An account with a locked password ('!') is refused by sshd even for key logins without PAM.
      await sh(["usermod", "-p", "*", u]);
    }
    await writeFile(`/etc/sudoers.d/lab-test-${tag}`, `${sudoUser} ALL=(ALL) NOPASSWD: ALL\n`, {
      mode: 0o440,
    });
    await chmod(dir, 0o755);

    for (let i = 0; i < count; i++) {
      const netns = `labt-${tag}-${i}`;
      const hostIf = `lt${tag}h${i}`;
      const nsIf = `lt${tag}n${i}`;
      const address = `10.253.${octet}.${8 + i * 4 + 2}`;
      const gw = `10.253.${octet}.${8 + i * 4 + 1}`;
      await sh(["ip", "netns", "add", netns]);
      hosts.push({ name: `host-${i}`, netns, address, port: 22, hostPublicKey: "" });
      await sh(["ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf]);
      await sh(["ip", "link", "set", nsIf, "netns", netns]);
      await sh(["ip", "addr", "add", `${gw}/30`, "dev", hostIf]);
      await sh(["ip", "link", "set", hostIf, "up"]);
      await sh(["ip", "-n", netns, "addr", "add", `${address}/30`, "dev", nsIf]);
      await sh(["ip", "-n", netns, "link", "set", nsIf, "up"]);
      await sh(["ip", "-n", netns, "link", "set", "lo", "up"]);
      const hostKey = join(dir, `host${i}_ed25519`);
      const pair = await generateEd25519(`host-${i}`);
      await writeFile(hostKey, pair.privateKey, { mode: 0o600 });
      hosts[i]!.hostPublicKey = pair.publicKey;
      const conf = join(dir, `sshd${i}.conf`);
      await writeFile(
        conf,
        [
          `ListenAddress ${address}:22`,
          `HostKey ${hostKey}`,
          `PidFile ${join(dir, `sshd${i}.pid`)}`,
          `AuthorizedKeysFile ${authorized}`,
          "PasswordAuthentication no",
          "KbdInteractiveAuthentication no",
          "UsePAM no",
          "StrictModes no",
          "PermitRootLogin prohibit-password",
          "Subsystem sftp internal-sftp",
          "",
        ].join("\n"),
      );
      await execa("mkdir", ["-p", "/run/sshd"]);
      const d = execa("ip", ["netns", "exec", netns, "/usr/sbin/sshd", "-D", "-e", "-f", conf], {
        reject: false,
        stdout: "ignore",
        stderr: { file: join(dir, `sshd${i}.log`) },
      });
      daemons.push(d);
    }
    // Ready when each sshd accepts TCP.
    const net = await import("node:net");
    for (const h of hosts) {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const ok = await new Promise<boolean>((resolve) => {
          const s = net.connect(h.port, h.address, () => (s.destroy(), resolve(true)));
          s.on("error", () => resolve(false));
        });
        if (ok) break;
        if (Date.now() > deadline) throw new Error(`sshd in ${h.netns} did not start`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    return { dir, hosts, clientKeyPath, sudoUser, plainUser, destroy: cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

export async function readText(path: string): Promise<string> {
  return readFile(path, "utf8");
}

/** A worker Machine on the first test host, logging in as the sudo user with its pinned host key. */
export function testMachine(env: TestHosts, over: Partial<Machine["ssh"]> = {}): Machine {
  const h = env.hosts[0]!;
  return {
    name: "node-a",
    role: "worker",
    address: h.address,
    ssh: {
      host: h.address,
      port: h.port,
      user: env.sudoUser,
      privateKeyPath: env.clientKeyPath,
      hostKey: h.hostPublicKey,
      ...over,
    },
  };
}
