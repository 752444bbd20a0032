/**
 * Where and how to log in to a machine over SSH. Provisioners fill these in (a `Machine` carries
 * one); everything in ssh/ only needs these shapes, never the provisioner that made them.
 */

export interface SshJump {
  host: string;
  port: number;
  user: string;
  privateKeyPath: string;
  /** Pinned host key: an OpenSSH public key or a `SHA256:` fingerprint; never trust-on-first-use. */
  hostKey: string;
}

export interface SshEndpoint {
  host: string;
  port: number;
  user: string;
  /** Path of the private key file (mode 0600). */
  privateKeyPath: string;
  /** Pinned host public key in OpenSSH form (`ssh-ed25519 AAAA...`); never trust-on-first-use. */
  hostKey: string;
  /**
   * Reach the machine through this SSH host (a remote hypervisor whose lab network only it can
   * reach): the connection is forwarded from there to host:port. Pinned like the machine itself.
   */
  jump?: SshJump;
}

/** A named machine that sessions are opened to (a provisioner's `Machine` is one). */
export interface SshHost {
  name: string;
  ssh: SshEndpoint;
}
