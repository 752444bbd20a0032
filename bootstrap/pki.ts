/**
 * The lab's PKI, ECDSA P-256 throughout (@peculiar/x509 over Node's WebCrypto):
 *
 * - `ca`: the lab CA. Signs the apiserver serving cert and every client of the API (admin, nodes).
 * - `etcd/ca`: a separate CA for etcd, so a node's API client cert can never talk to etcd directly.
 *   It signs each master's etcd peer and server certs and lab-server's etcd client cert.
 *
 * Everything lives under `pki/` in the lab state; keys are 0600. `ensurePki` is idempotent: a
 * certificate is reissued only when what it must say (subject, SANs, usages, issuer) changed or it is
 * near expiry, so a second `lab up` changes nothing.
 */
import { webcrypto } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import * as x509 from "@peculiar/x509";
import type { Plan } from "../topology/plan.ts";
import { writeFileAtomic, type LabState } from "../topology/state.ts";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY = 86_400_000;
const CA_DAYS = 3650;
const LEAF_DAYS = 365;
/** Reissue a leaf that expires sooner than this. */
const RENEW_BEFORE_DAYS = 30;

export type CaId = "ca" | "etcd/ca";

/** What one certificate must say; the planner of the PKI is pure and works from this. */
export interface CertSpec {
  /** Path under pki/ without extension, e.g. `etcd/master-1-peer`. */
  id: string;
  ca: CaId;
  cn: string;
  o?: string[];
  usages: ("server" | "client")[];
  dns?: string[];
  ips?: string[];
}

export interface KeyPairPem {
  cert: string;
  key: string;
}

export interface CertificateAuthority extends KeyPairPem {
  certificate: x509.X509Certificate;
  privateKey: CryptoKey;
}

const subjectOf = (cn: string, o: string[] = []) => [`CN=${cn}`, ...o.map((x) => `O=${x}`)].join(", ");

const sortUnique = (xs: string[] = []) => [...new Set(xs)].sort();

/** The apiserver's serving names: every master, the VIP, loopback, and the in-cluster names. */
export function apiServerSANs(plan: Plan): { dns: string[]; ips: string[] } {
  const d = plan.cluster.domain;
  return {
    dns: sortUnique([
      "kubernetes",
      "kubernetes.default",
      "kubernetes.default.svc",
      `kubernetes.default.svc.${d}`,
      "localhost",
      ...plan.masters.map((m) => m.name),
    ]),
    ips: sortUnique([
      ...plan.masters.map((m) => m.address),
      ...(plan.network.vip ? [plan.network.vip] : []),
      "127.0.0.1",
      plan.cluster.kubernetesServiceIP,
    ]),
  };
}

/** Every certificate a lab needs, from its plan. Pure. */
export function certSpecs(plan: Plan): CertSpec[] {
  const specs: CertSpec[] = [];
  for (const m of plan.masters) {
    const names = { dns: sortUnique([m.name, "localhost"]), ips: sortUnique([m.address, "127.0.0.1"]) };
    for (const kind of ["peer", "server"])
      specs.push({
        id: `etcd/${m.name}-${kind}`,
        ca: "etcd/ca",
        cn: m.name,
        usages: ["server", "client"],
        ...names,
      });
  }
  specs.push({ id: "apiserver-etcd-client", ca: "etcd/ca", cn: "lab-server", usages: ["client"] });
  specs.push({ id: "apiserver", ca: "ca", cn: "lab-server", usages: ["server"], ...apiServerSANs(plan) });
  specs.push({ id: "admin", ca: "ca", cn: "lab-admin", o: ["system:masters"], usages: ["client"] });
  // The scheduler and controllers inside lab-server reach the API like any other client.
  specs.push({
    id: "controller-manager",
    ca: "ca",
    cn: "system:lab-controller-manager",
    o: ["system:masters"],
    usages: ["client"],
  });
  // lab-server's identity towards the agents' logs/exec port, which admits only this subject.
  specs.push({
    id: "apiserver-kubelet-client",
    ca: "ca",
    cn: "lab-apiserver-kubelet-client",
    o: ["system:masters"],
    usages: ["client"],
  });
  for (const n of plan.nodes) {
    // the agent's serving certificate (port 10250); lab-server dials the node's InternalIP
    specs.push({
      id: `nodes/${n.name}-serving`,
      ca: "ca",
      cn: `system:node:${n.name}`,
      o: ["system:nodes"],
      usages: ["server"],
      dns: [n.name],
      ips: [n.address],
    });
    specs.push({
      id: `nodes/${n.name}`,
      ca: "ca",
      cn: `system:node:${n.name}`,
      o: ["system:nodes"],
      usages: ["client"],
    });
  }
  return specs;
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
}

async function keyToPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

async function pemToKey(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decode(pem)[0]!;
  return (await webcrypto.subtle.importKey("pkcs8", der, ALG, true, ["sign"])) as CryptoKey;
}

function serial(): string {
  const b = webcrypto.getRandomValues(new Uint8Array(16));
  b[0] = b[0]! & 0x7f; // positive
  return Buffer.from(b).toString("hex");
}

export async function createCA(cn: string, now = new Date()): Promise<CertificateAuthority> {
  const keys = await generateKeys();
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: subjectOf(cn),
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + CA_DAYS * DAY),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    certificate,
    privateKey: keys.privateKey,
    cert: certificate.toString("pem"),
    key: await keyToPem(keys.privateKey),
  };
}

export async function loadCA(pair: KeyPairPem): Promise<CertificateAuthority> {
  return { ...pair, certificate: new x509.X509Certificate(pair.cert), privateKey: await pemToKey(pair.key) };
}

export async function issueCertificate(
  spec: CertSpec,
  ca: CertificateAuthority,
  now = new Date(),
): Promise<KeyPairPem> {
  const keys = await generateKeys();
  const eku = spec.usages.map((u) =>
    u === "server" ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth,
  );
  const san = [
    ...(spec.dns ?? []).map((value) => ({ type: "dns" as const, value })),
    ...(spec.ips ?? []).map((value) => ({ type: "ip" as const, value })),
  ];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: subjectOf(spec.cn, spec.o),
    issuer: ca.certificate.subject,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + LEAF_DAYS * DAY),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: ca.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
        true,
      ),
      new x509.ExtendedKeyUsageExtension(eku, false),
      ...(san.length ? [new x509.SubjectAlternativeNameExtension(san, false)] : []),
      await x509.AuthorityKeyIdentifierExtension.create(ca.certificate, false),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: cert.toString("pem"), key: await keyToPem(keys.privateKey) };
}

/** True when `cert` was signed by `ca` and is valid at `now`. */
export async function verifiedBy(cert: string, ca: string, now = new Date()): Promise<boolean> {
  const c = new x509.X509Certificate(cert);
  const issuer = new x509.X509Certificate(ca);
  if (c.issuer !== issuer.subject) return false;
  return c.verify({ publicKey: issuer.publicKey, date: now });
}

export interface PkiResult {
  /** Ids of certificates (and CAs) created or reissued by this run; empty on a rerun. */
  issued: string[];
  reused: string[];
}

async function readPair(state: LabState, id: string): Promise<KeyPairPem | undefined> {
  const crt = state.path("pki", `${id}.crt`);
  const key = state.path("pki", `${id}.key`);
  if (!existsSync(crt) || !existsSync(key)) return undefined;
  return { cert: await readFile(crt, "utf8"), key: await readFile(key, "utf8") };
}

/** Creates what is missing or out of date under `pki/` and leaves the rest untouched. */
export async function ensurePki(state: LabState, plan: Plan, now = new Date()): Promise<PkiResult> {
  const result: PkiResult = { issued: [], reused: [] };
  const cas = new Map<CaId, CertificateAuthority>();
  for (const [id, cn] of [
    ["ca", `lab ${plan.lab} CA`],
    ["etcd/ca", `lab ${plan.lab} etcd CA`],
  ] as const) {
    const existing = await readPair(state, id);
    if (existing) {
      cas.set(id, await loadCA(existing));
      result.reused.push(id);
    } else {
      const ca = await createCA(cn, now);
      await state.writeSecret(`pki/${id}.key`, ca.key);
      await state.writeJson(`pki/${id}.spec.json`, { cn });
      await writeCert(state, id, ca.cert);
      cas.set(id, ca);
      result.issued.push(id);
    }
  }
  for (const spec of certSpecs(plan)) {
    const ca = cas.get(spec.ca)!;
    const existing = await readPair(state, spec.id);
    const recorded = await state.readJson<CertSpec>(`pki/${spec.id}.spec.json`);
    if (existing && recorded && JSON.stringify(recorded) === JSON.stringify(spec)) {
      const renewAt = new Date(now.getTime() + RENEW_BEFORE_DAYS * DAY);
      if (
        (await verifiedBy(existing.cert, ca.cert, now)) &&
        new x509.X509Certificate(existing.cert).notAfter > renewAt
      ) {
        result.reused.push(spec.id);
        continue;
      }
    }
    const pair = await issueCertificate(spec, ca, now);
    await state.writeSecret(`pki/${spec.id}.key`, pair.key);
    await writeCert(state, spec.id, pair.cert);
    await state.writeJson(`pki/${spec.id}.spec.json`, spec);
    result.issued.push(spec.id);
  }
  return result;
}

async function writeCert(state: LabState, id: string, cert: string): Promise<void> {
  await writeFileAtomic(state.path("pki", `${id}.crt`), cert, 0o644);
}

/** Reads one certificate and key from the lab state (`pki/ID.crt`, `pki/ID.key`). */
export async function readPkiPair(state: LabState, id: string): Promise<KeyPairPem> {
  const pair = await readPair(state, id);
  if (!pair) throw new Error(`pki/${id} is missing from the lab state; run \`lab up\` to create it`);
  return pair;
}
