import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { keyId, publicKeysOf, ServiceAccountTokens } from "../../../../controlplane/serviceaccount/tokens.ts";

const pem = (kind: "ec" | "rsa"): string =>
  (kind === "ec"
    ? generateKeyPairSync("ec", { namedCurve: "prime256v1" })
    : generateKeyPairSync("rsa", { modulusLength: 2048 })
  ).privateKey.export({ type: "pkcs8", format: "pem" }) as string;

const request = {
  namespace: "ns",
  name: "sa",
  uid: "u-1",
  audiences: [],
  expirationSeconds: 600,
  now: 1_000_000,
};
const part = (token: string, i: number): Record<string, unknown> =>
  JSON.parse(Buffer.from(token.split(".")[i]!, "base64url").toString()) as Record<string, unknown>;

describe("service-account JWTs", () => {
  for (const kind of ["ec", "rsa"] as const) {
    it(`signs with ${kind === "ec" ? "ES256" : "RS256"} and verifies within the token's life only`, () => {
      const t = ServiceAccountTokens.fromPem(pem(kind));
      const { token } = t.issue(request);
      expect(part(token, 0)).toMatchObject({ alg: kind === "ec" ? "ES256" : "RS256" });
      expect(t.verify(token, 1_000_100)).toMatchObject({
        ok: true,
        claims: { sub: "system:serviceaccount:ns:sa" },
      });
      expect(t.verify(token, 1_000_600)).toEqual({ ok: false, why: "token has expired" });
    });
  }

  it("rejects tampered claims, another key, another issuer and garbage without throwing", () => {
    const key = pem("ec");
    const t = ServiceAccountTokens.fromPem(key);
    const { token } = t.issue(request);
    const [h, , sig] = token.split(".");
    const forged = Buffer.from(
      JSON.stringify({ ...part(token, 1), sub: "system:serviceaccount:kube-system:x" }),
    ).toString("base64url");
    expect(t.verify(`${h}.${forged}.${sig}`, 1_000_100)).toEqual({ ok: false, why: "invalid signature" });
    expect(ServiceAccountTokens.fromPem(pem("ec")).verify(token, 1_000_100)).toMatchObject({ ok: false });
    expect(ServiceAccountTokens.fromPem(key, undefined, "https://other").verify(token, 1_000_100)).toEqual({
      ok: false,
      why: "issuer not accepted",
    });
    for (const bad of ["", "a.b", "a.b.c", `${h}.${forged}.AAAA`, `${h}.!!!.${sig}`, "x".repeat(10_000)])
      expect(t.verify(bad, 1_000_100).ok).toBe(false);
  });

  it("verifies with any of several keys (rotation), matched by kid", () => {
    const old = pem("ec");
    const next = pem("rsa");
    const issuedOld = ServiceAccountTokens.fromPem(old).issue(request).token;
    const both = ServiceAccountTokens.fromPem(next, `${old}\n${next}`);
    expect(both.verify(issuedOld, 1_000_100).ok).toBe(true);
    expect(both.verify(both.issue(request).token, 1_000_100).ok).toBe(true);
    expect(part(issuedOld, 0).kid).toBe(keyId(publicKeysOf(old)[0]!));
  });

  it("keeps the bound pod in the kubernetes.io claims", () => {
    const t = ServiceAccountTokens.fromPem(pem("ec"));
    const { claims } = t.issue({ ...request, bound: { kind: "Pod", name: "p", uid: "pu" } });
    expect(claims["kubernetes.io"]).toEqual({
      namespace: "ns",
      serviceaccount: { name: "sa", uid: "u-1" },
      pod: { name: "p", uid: "pu" },
    });
    expect(claims.aud).toEqual(["https://kubernetes.default.svc.cluster.local"]);
  });
});
