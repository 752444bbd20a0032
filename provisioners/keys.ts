/**
 * SSH keys of a lab: the lab's own client key (used for every node unless the topology names one)
 * and per-machine host keys generated before first boot, so known_hosts is exact from the first
 * connection. ed25519 only: RSA host key generation alone costs ~5 s of guest boot under TCG.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { fingerprintOfBlob } from "../ssh/host-key.ts";
import { LabError } from "../topology/errors.ts";
import type { LabState } from "../topology/state.ts";

export interface KeyPair {
  /** OpenSSH private key. */
  privateKey: string;
  /** `ssh-ed25519 AAAA... comment` */
  publicKey: string;
}

export async function generateEd25519(comment: string): Promise<KeyPair> {
  const dir = await mkdtemp(join(tmpdir(), "lab-key-"));
  try {
    const file = join(dir, "key");
    try {
      await execa("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file]);
    } catch (err) {
      throw new LabError({
        code: "HOST_TOOL_MISSING",
        what: `ssh-keygen failed: ${(err as Error).message.split("\n")[0]}`,
        fix: "install openssh-client (or run `lab doctor --fix`)",
        source: "host",
      });
    }
    return {
      privateKey: await readFile(file, "utf8"),
      publicKey: (await readFile(`${file}.pub`, "utf8")).trim(),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** SHA256 fingerprint (`SHA256:...`, as ssh-keygen -l prints it) of an OpenSSH public key. */
export async function fingerprint(publicKey: string): Promise<string> {
  return fingerprintOfBlob(Buffer.from(publicKey.trim().split(/\s+/)[1] ?? "", "base64"));
}

/** The lab's client key pair, created once under the lab state as `ssh/id_ed25519` (0600). */
export async function ensureLabSshKey(
  state: LabState,
): Promise<{ privateKeyPath: string; publicKey: string }> {
  const privateKeyPath = state.path("ssh", "id_ed25519");
  if (!existsSync(privateKeyPath) || !existsSync(`${privateKeyPath}.pub`)) {
    const pair = await generateEd25519(`lab-${state.name}`);
    await state.writeSecret("ssh/id_ed25519", pair.privateKey);
    await state.writeSecret("ssh/id_ed25519.pub", pair.publicKey + "\n");
  }
  return { privateKeyPath, publicKey: (await readFile(`${privateKeyPath}.pub`, "utf8")).trim() };
}

/** A host key for one machine, generated once and kept in the lab state (`hosts/NAME/`). */
export async function ensureHostKey(state: LabState, machine: string): Promise<KeyPair> {
  const priv = state.path("hosts", machine, "ssh_host_ed25519_key");
  if (!existsSync(priv)) {
    const pair = await generateEd25519(`${machine}.${state.name}`);
    await state.writeSecret(`hosts/${machine}/ssh_host_ed25519_key`, pair.privateKey);
    await state.writeJson(`hosts/${machine}/host-key.json`, { publicKey: pair.publicKey });
  }
  const { publicKey } = (await state.readJson<{ publicKey: string }>(`hosts/${machine}/host-key.json`))!;
  return { privateKey: await readFile(priv, "utf8"), publicKey };
}
