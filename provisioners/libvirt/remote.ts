/**
 * Remote hypervisors (`qemu+ssh://user@host:port/system`): who to log in as, with which key, and
 * which host key to expect. The lab's network is an isolated bridge on the hypervisor, so `lab`
 * reaches the VMs through an SSH jump via the hypervisor host; that jump is pinned like every other
 * SSH connection of the lab: by a fingerprint in the topology or an entry in known_hosts, never
 * trust-on-first-use.
 */
import { createHmac } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { homedir, userInfo } from "node:os";
import { join } from "node:path";
import { LabError } from "../../topology/errors.ts";
import type { SshJump } from "../../ssh/endpoint.ts";

export interface RemoteUri {
  transport: "ssh" | "libssh" | "libssh2";
  user?: string;
  host: string;
  port: number;
  keyfile?: string;
  knownHosts?: string;
  /** `no_verify=1`: libvirt would skip the host key check. */
  noVerify: boolean;
}

/** The SSH part of a remote URI, or undefined for a local one (no host) or a non-SSH transport. */
export function parseRemoteUri(uri: string): RemoteUri | undefined {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    return undefined;
  }
  const transport = /^[a-z0-9]+\+(ssh|libssh|libssh2):$/i.exec(u.protocol)?.[1]?.toLowerCase();
  if (!transport || !u.hostname) return undefined;
  const p = u.searchParams;
  return {
    transport: transport as RemoteUri["transport"],
    user: u.username ? decodeURIComponent(u.username) : undefined,
    host: u.hostname.replace(/^\[|\]$/g, ""),
    port: u.port ? Number(u.port) : 22,
    keyfile: p.get("keyfile") ?? undefined,
    knownHosts: p.get("known_hosts") ?? undefined,
    noVerify: p.get("no_verify") === "1",
  };
}

/** The names a known_hosts line uses for host:port (`host`, or `[host]:port` off port 22). */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** Whether one known_hosts host pattern (plain or `|1|salt|hash`) names `name`. */
function matchesHost(pattern: string, name: string): boolean {
  if (pattern.startsWith("|1|")) {
    const [, , salt, hash] = pattern.split("|");
    if (!salt || !hash) return false;
    return createHmac("sha1", Buffer.from(salt, "base64")).update(name).digest("base64") === hash;
  }
  return pattern === name;
}

/** Public keys (`type base64`) that a known_hosts text lists for host:port; markers are skipped. */
export function knownHostKeys(text: string, host: string, port: number): string[] {
  const name = knownHostsName(host, port);
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const cols = line.trim().split(/\s+/);
    if (!cols[0] || cols[0].startsWith("#") || cols[0].startsWith("@")) continue;
    const [hosts, type, key] = cols;
    if (!type || !key) continue;
    const names = hosts!.split(",");
    if (names.some((h) => h.startsWith("!") && matchesHost(h.slice(1), name))) continue;
    if (names.some((h) => matchesHost(h, name))) out.push(`${type} ${key}`);
  }
  return out;
}

const expand = (p: string) => (p.startsWith("~/") ? join(homedir(), p.slice(2)) : p);

/**
 * How `lab` logs into the hypervisor: the URI's user, keyfile and known_hosts (else the defaults
 * OpenSSH uses: ~/.ssh/id_ed25519 etc. and ~/.ssh/known_hosts), or the topology's pinned
 * fingerprint. Refuses `no_verify=1` and a host without a pin.
 */
export async function hypervisorJump(remote: RemoteUri, pinnedFingerprint?: string): Promise<SshJump> {
  const uriWhere = "spec.provider.uri";
  if (remote.noVerify) {
    throw new LabError({
      code: "HYPERVISOR_HOST_KEY_UNVERIFIED",
      what: `the libvirt URI sets no_verify=1: lab never connects to a host whose key it does not check`,
      where: uriWhere,
      fix: "remove no_verify=1 and add the hypervisor to known_hosts (ssh-keyscan, checked against `ssh-keygen -lf` on the host), or set spec.provider.hostKey",
    });
  }
  const candidates = remote.keyfile
    ? [expand(remote.keyfile)]
    : ["id_ed25519", "id_ecdsa", "id_rsa"].map((k) => join(homedir(), ".ssh", k));
  const privateKeyPath = candidates.find((k) => existsSync(k)) ?? candidates[0]!;
  let hostKey = pinnedFingerprint;
  if (!hostKey) {
    const file = expand(remote.knownHosts ?? "~/.ssh/known_hosts");
    const text = await readFile(file, "utf8").catch(() => "");
    const keys = knownHostKeys(text, remote.host, remote.port);
    // Prefer ed25519, which is what sshd offers first and ssh2 negotiates.
    hostKey = keys.find((k) => k.startsWith("ssh-ed25519 ")) ?? keys[0];
    if (!hostKey) {
      throw new LabError({
        code: "HYPERVISOR_HOST_KEY_UNKNOWN",
        what: `the hypervisor ${knownHostsName(remote.host, remote.port)} has no entry in ${file}`,
        where: uriWhere,
        fix: `log in once with \`ssh -p ${remote.port} ${remote.user ?? userInfo().username}@${remote.host}\` and check the fingerprint it shows against \`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\` on the host, or set spec.provider.hostKey: SHA256:...`,
      });
    }
  }
  return {
    host: remote.host,
    port: remote.port,
    user: remote.user ?? userInfo().username,
    privateKeyPath,
    hostKey,
  };
}
