import type { IncomingMessage } from "node:http";
import type { TLSSocket } from "node:tls";
import { ApiError } from "../../api/status.ts";
import type { UserInfo } from "../authz.ts";

export const ANONYMOUS: UserInfo = { name: "system:anonymous", groups: ["system:unauthenticated"] };

export function unauthorized(): ApiError {
  return new ApiError(
    401,
    "Unauthorized",
    "Unauthorized: a client certificate signed by the cluster CA is required",
  );
}

/** Client-certificate authentication: CN is the user, O the groups (as kube-apiserver's x509 authenticator). */
export class CertAuthenticator {
  // The certificate is fixed for the connection's life: decode it once, not on every request of
  // a keep-alive connection (getPeerCertificate builds a fresh object each time).
  private readonly users = new WeakMap<TLSSocket, UserInfo | undefined>();

  authenticate(req: IncomingMessage): UserInfo | undefined {
    const sock = req.socket as TLSSocket;
    if (!sock.authorized) return undefined;
    if (this.users.has(sock)) return this.users.get(sock);
    const cert = sock.getPeerCertificate();
    const cn = cert?.subject?.CN;
    const o = cert?.subject?.O;
    const groups = o === undefined ? [] : Array.isArray(o) ? o : [o];
    const user = cn
      ? { name: Array.isArray(cn) ? cn[0]! : cn, groups: [...groups, "system:authenticated"] }
      : undefined;
    this.users.set(sock, user);
    return user;
  }
}
