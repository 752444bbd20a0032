/**
 * A "remote hypervisor" for tests: a real sshd on 127.0.0.1 (random port, temp ed25519 host key,
 * root login by key only) in front of this machine's libvirtd. The URI it hands out is a genuine
 * qemu+ssh URI: libvirt's client runs OpenSSH to it and virt-ssh-helper on the other side. Its log
 * (LogLevel DEBUG1) records every forwarded connection, so a test can prove the jump was used.
 */
import { execa, type ResultPromise } from "execa";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateEd25519 } from "../../provisioners/keys.ts";

export interface LoopbackHypervisor {
  dir: string;
  port: number;
  /** `ssh-ed25519 AAAA...` of the sshd. */
  hostPublicKey: string;
  clientKeyPath: string;
  /** known_hosts with the sshd's entry (`[127.0.0.1]:PORT ...`). */
  knownHostsPath: string;
  /**
   * The qemu+ssh URI. libvirt's OpenSSH transport ignores `known_hosts=` (it reads
   * ~/.ssh/known_hosts), so `command=` points it at ssh pinned to the same file; lab's own jump
   * reads `known_hosts=`.
   */
  uri: string;
  log(): Promise<string>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export async function startLoopbackHypervisor(): Promise<LoopbackHypervisor> {
  const dir = await mkdtemp(join(tmpdir(), "lab-hv-"));
  let daemon: ResultPromise | undefined;
  const stop = async () => {
    daemon?.kill("SIGTERM");
    if (daemon) await daemon;
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const port = await freePort();
    const host = await generateEd25519("lab-test-hypervisor");
    const client = await generateEd25519("lab-test-workstation");
    const hostKeyPath = join(dir, "host_ed25519");
    const clientKeyPath = join(dir, "client_ed25519");
    await writeFile(hostKeyPath, host.privateKey, { mode: 0o600 });
    await writeFile(clientKeyPath, client.privateKey, { mode: 0o600 });
    await writeFile(join(dir, "authorized_keys"), client.publicKey + "\n", { mode: 0o600 });
    const knownHostsPath = join(dir, "known_hosts");
    await writeFile(
      knownHostsPath,
      `[127.0.0.1]:${port} ${host.publicKey.split(/\s+/).slice(0, 2).join(" ")}\n`,
    );
    const wrapper = join(dir, "ssh-pinned");
    await writeFile(
      wrapper,
      `#!/bin/sh\nexec ssh -o UserKnownHostsFile=${knownHostsPath} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes "$@"\n`,
    );
    await chmod(wrapper, 0o755);
    const conf = join(dir, "sshd.conf");
    await writeFile(
      conf,
      [
        `ListenAddress 127.0.0.1:${port}`,
        `HostKey ${hostKeyPath}`,
        `PidFile ${join(dir, "sshd.pid")}`,
        `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "PermitRootLogin prohibit-password",
        "AllowTcpForwarding yes",
        "LogLevel DEBUG1",
        "",
      ].join("\n"),
    );
    await execa("mkdir", ["-p", "/run/sshd"]);
    const logPath = join(dir, "sshd.log");
    daemon = execa("/usr/sbin/sshd", ["-D", "-f", conf, "-E", logPath], { reject: false });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = connect(port, "127.0.0.1", () => (s.destroy(), resolve(true)));
        s.on("error", () => resolve(false));
      });
      if (ok) break;
      if (Date.now() > deadline) throw new Error("loopback sshd did not start");
      await new Promise((r) => setTimeout(r, 100));
    }
    const q = new URLSearchParams({
      keyfile: clientKeyPath,
      known_hosts: knownHostsPath,
      no_verify: "0",
      no_tty: "1",
      command: wrapper,
    });
    return {
      dir,
      port,
      hostPublicKey: host.publicKey,
      clientKeyPath,
      knownHostsPath,
      uri: `qemu+ssh://root@127.0.0.1:${port}/system?${q.toString()}`,
      log: () => readFile(logPath, "utf8").catch(() => ""),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
