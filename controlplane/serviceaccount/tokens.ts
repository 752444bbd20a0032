/**
 * Service-account tokens: JWTs as kube-apiserver issues them for TokenRequest (pkg/serviceaccount
 * claims.go), signed with the key of `--service-account-signing-key-file` (EC P-256/P-384 or
 * RSA) and checked against the keys of `--service-account-key-file`. Pure apart from node:crypto;
 * the lookups that a token's service account and pod still exist are the caller's (auth.ts).
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  randomUUID,
  sign,
  verify,
  type KeyObject,
} from "node:crypto";

/** kube-apiserver's default --service-account-issuer (and the API audience when none is set). */
export const DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local";

/** The kubernetes.io private claims: which service account, and the object the token is bound to. */
export interface KubernetesClaims {
  namespace: string;
  serviceaccount: { name: string; uid: string };
  pod?: { name: string; uid: string };
  secret?: { name: string; uid: string };
  node?: { name: string; uid: string };
}

export interface TokenClaims {
  aud: string[];
  exp: number;
  iat: number;
  nbf: number;
  iss: string;
  jti: string;
  sub: string;
  "kubernetes.io": KubernetesClaims;
}

export interface IssueRequest {
  namespace: string;
  name: string;
  uid: string;
  audiences: string[];
  expirationSeconds: number;
  bound?: { kind: "Pod" | "Secret" | "Node"; name: string; uid: string };
  /** Seconds since the epoch (tests move it). */
  now?: number;
}

type Alg = "ES256" | "ES384" | "ES512" | "RS256";

function algOf(key: KeyObject): Alg {
  const t = key.asymmetricKeyType;
  if (t === "rsa") return "RS256";
  if (t === "ec") {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === "prime256v1" || curve === "P-256") return "ES256";
    if (curve === "secp384r1" || curve === "P-384") return "ES384";
    if (curve === "secp521r1" || curve === "P-521") return "ES512";
  }
  throw new Error(
    `service-account key: ${t ?? "unknown"} keys are not supported (use RSA or EC P-256/P-384/P-521)`,
  );
}

const HASH: Record<Alg, string> = { ES256: "sha256", ES384: "sha384", ES512: "sha512", RS256: "sha256" };

/** Upstream's key id: the unpadded base64url SHA-256 of the public key's DER (PKIX) form. */
export function keyId(pub: KeyObject): string {
  return createHash("sha256")
    .update(pub.export({ type: "spki", format: "der" }))
    .digest("base64url");
}

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString("base64url");

/** Public keys from PEM text holding public keys, private keys or certificates (as --service-account-key-file). */
export function publicKeysOf(pem: string): KeyObject[] {
  const blocks = pem.match(/-----BEGIN [^-]+-----[\s\S]*?-----END [^-]+-----/g) ?? [];
  const out: KeyObject[] = [];
  for (const block of blocks) {
    if (/CERTIFICATE/.test(block)) {
      // A certificate's key (node:crypto reads SPKI from an X.509 PEM through createPublicKey).
      out.push(createPublicKey(block));
    } else if (/PRIVATE KEY/.test(block)) out.push(createPublicKey(createPrivateKey(block)));
    else out.push(createPublicKey(block));
  }
  if (out.length === 0) throw new Error("no PEM key found");
  return out;
}

/** crypto.verify that says false, never throws, for a signature of the wrong size or form. */
function safeVerify(
  alg: string,
  data: Buffer,
  key: { key: KeyObject; dsaEncoding?: "ieee-p1363" },
  sig: Buffer,
): boolean {
  try {
    return verify(alg, data, key, sig);
  } catch {
    return false;
  }
}

export type VerifyResult = { ok: true; claims: TokenClaims } | { ok: false; why: string };

export class ServiceAccountTokens {
  private readonly alg: Alg;
  private readonly kid: string;
  private readonly verifiers: { key: KeyObject; kid: string; alg: Alg }[];

  constructor(
    private readonly signingKey: KeyObject,
    verifyKeys: KeyObject[],
    readonly issuer: string = DEFAULT_ISSUER,
    readonly apiAudiences: string[] = [issuer],
  ) {
    this.alg = algOf(signingKey);
    this.kid = keyId(createPublicKey(signingKey));
    this.verifiers = verifyKeys.map((key) => ({ key, kid: keyId(key), alg: algOf(key) }));
  }

  /** From PEM files' contents: the signing key, and the verification keys (default: the signing key's own). */
  static fromPem(signingKeyPem: string, verifyPem?: string, issuer?: string): ServiceAccountTokens {
    const priv = createPrivateKey(signingKeyPem);
    const pubs = verifyPem ? publicKeysOf(verifyPem) : [createPublicKey(priv)];
    return new ServiceAccountTokens(priv, pubs, issuer);
  }

  issue(r: IssueRequest): { token: string; claims: TokenClaims } {
    const now = r.now ?? Math.floor(Date.now() / 1000);
    const k8s: KubernetesClaims = { namespace: r.namespace, serviceaccount: { name: r.name, uid: r.uid } };
    if (r.bound?.kind === "Pod") k8s.pod = { name: r.bound.name, uid: r.bound.uid };
    if (r.bound?.kind === "Secret") k8s.secret = { name: r.bound.name, uid: r.bound.uid };
    if (r.bound?.kind === "Node") k8s.node = { name: r.bound.name, uid: r.bound.uid };
    const claims: TokenClaims = {
      aud: r.audiences.length ? r.audiences : this.apiAudiences,
      exp: now + r.expirationSeconds,
      iat: now,
      iss: this.issuer,
      jti: randomUUID(),
      "kubernetes.io": k8s,
      nbf: now,
      sub: `system:serviceaccount:${r.namespace}:${r.name}`,
    };
    const input = `${b64({ alg: this.alg, kid: this.kid })}.${b64(claims)}`;
    const sig = sign(HASH[this.alg], Buffer.from(input), {
      key: this.signingKey,
      ...(this.alg === "RS256" ? {} : { dsaEncoding: "ieee-p1363" as const }),
    });
    return { token: `${input}.${sig.toString("base64url")}`, claims };
  }

  /** Signature, issuer, audience and lifetime; `why` is for the log, the client only sees 401. */
  verify(token: string, nowSeconds = Math.floor(Date.now() / 1000)): VerifyResult {
    const parts = token.split(".");
    if (parts.length !== 3) return { ok: false, why: "not a JWT" };
    let header: { alg?: unknown; kid?: unknown };
    let claims: Partial<TokenClaims>;
    try {
      header = JSON.parse(Buffer.from(parts[0]!, "base64url").toString()) as typeof header;
      claims = JSON.parse(Buffer.from(parts[1]!, "base64url").toString()) as Partial<TokenClaims>;
    } catch {
      return { ok: false, why: "malformed JWT" };
    }
    if (typeof header !== "object" || header === null || typeof claims !== "object" || claims === null)
      return { ok: false, why: "malformed JWT" };
    const input = Buffer.from(`${parts[0]}.${parts[1]}`);
    const sig = Buffer.from(parts[2]!, "base64url");
    const candidates = this.verifiers.filter(
      (v) => v.alg === header.alg && (header.kid === undefined || header.kid === v.kid),
    );
    const good = candidates.some((v) =>
      safeVerify(
        HASH[v.alg],
        input,
        { key: v.key, ...(v.alg === "RS256" ? {} : { dsaEncoding: "ieee-p1363" as const }) },
        sig,
      ),
    );
    if (!good) return { ok: false, why: "invalid signature" };
    if (claims.iss !== this.issuer) return { ok: false, why: "issuer not accepted" };
    const aud = Array.isArray(claims.aud) ? claims.aud : typeof claims.aud === "string" ? [claims.aud] : [];
    if (!aud.some((a) => this.apiAudiences.includes(a)))
      return { ok: false, why: "token audiences are invalid" };
    if (typeof claims.exp !== "number" || nowSeconds >= claims.exp)
      return { ok: false, why: "token has expired" };
    if (typeof claims.nbf === "number" && nowSeconds < claims.nbf - 60)
      return { ok: false, why: "token is not valid yet" };
    const k = claims["kubernetes.io"];
    if (
      typeof claims.sub !== "string" ||
      !k ||
      typeof k.namespace !== "string" ||
      typeof k.serviceaccount?.name !== "string" ||
      claims.sub !== `system:serviceaccount:${k.namespace}:${k.serviceaccount.name}`
    )
      return { ok: false, why: "missing or inconsistent kubernetes.io claims" };
    return { ok: true, claims: claims as TokenClaims };
  }
}
