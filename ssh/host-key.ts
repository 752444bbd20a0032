/** Host-key pinning: fingerprints as `ssh-keygen -l` prints them, and what a pin stands for. */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { ServerHostKeyAlgorithm } from "ssh2";
import type { LabError } from "../topology/errors.ts";

/** The client's private key at `path`; when it cannot be read, the error `missing(reason)` says what to fix. */
export async function readClientKey(path: string, missing: (reason: string) => LabError): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw missing((err as Error).message);
  }
}

/** `SHA256:...` of a raw SSH public key blob, as `ssh-keygen -l` prints it. */
export function fingerprintOfBlob(blob: Buffer): string {
  return "SHA256:" + createHash("sha256").update(blob).digest("base64").replace(/=+$/, "");
}

/** The fingerprint a pin stands for: a `SHA256:` string as is, or that of an OpenSSH public key. */
export function pinnedFingerprint(hostKey: string): string | undefined {
  const k = hostKey.trim();
  if (!k) return undefined;
  if (k.startsWith("SHA256:")) return k;
  const blob = k.split(/\s+/)[1];
  return blob ? fingerprintOfBlob(Buffer.from(blob, "base64")) : undefined;
}

/** Host key algorithms that present a key of the pinned type; undefined for a bare fingerprint. */
export function keyAlgorithms(hostKey: string): ServerHostKeyAlgorithm[] | undefined {
  const type = hostKey.trim().split(/\s+/)[0];
  if (!type || type.startsWith("SHA256:")) return undefined;
  if (type === "ssh-rsa") return ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"];
  return [type as ServerHostKeyAlgorithm];
}
