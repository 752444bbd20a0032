/**
 * lab-server's standalone mode (`--cert-dir DIR --listen HOST:PORT --write-kubeconfig FILE`): the
 * certificates a single API server needs, made with the bootstrap's PKI code the first time and
 * reused from DIR afterwards, and the kubeconfigs that point at it (the admin's, the control
 * loops', a node's from `lab-server issue-node-cert`).
 *
 * DIR holds `ca.{crt,key}`, `apiserver.{crt,key}` (serving), `admin.{crt,key}` (system:masters),
 * `controller-manager.{crt,key}` (the scheduler and controllers), `apiserver-kubelet-client.{crt,key}`
 * (pods/log and exec towards the agents), `nodes/NAME.{crt,key}`, and `endpoint` (the URL the last
 * start listened on). Keys are 0600.
 */
import { createHash, generateKeyPairSync } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { renderKubeconfig } from "../bootstrap/kubeconfig.ts";
import {
  createCA,
  issueCertificate,
  loadCA,
  verifiedBy,
  type CertSpec,
  type CertificateAuthority,
  type KeyPairPem,
} from "../bootstrap/pki.ts";
import { writeFileAtomic } from "../topology/state.ts";

export const CLUSTER_NAME = "lab-standalone";

export interface StandalonePaths {
  dir: string;
  caCert: string;
  caKey: string;
  servingCert: string;
  servingKey: string;
  adminCert: string;
  adminKey: string;
  loopsCert: string;
  loopsKey: string;
  kubeletClientCert: string;
  kubeletClientKey: string;
  endpoint: string;
}

export function standalonePaths(dir: string): StandalonePaths {
  const p = (f: string): string => join(dir, f);
  return {
    dir,
    caCert: p("ca.crt"),
    caKey: p("ca.key"),
    servingCert: p("apiserver.crt"),
    servingKey: p("apiserver.key"),
    adminCert: p("admin.crt"),
    adminKey: p("admin.key"),
    loopsCert: p("controller-manager.crt"),
    loopsKey: p("controller-manager.key"),
    kubeletClientCert: p("apiserver-kubelet-client.crt"),
    kubeletClientKey: p("apiserver-kubelet-client.key"),
    endpoint: p("endpoint"),
  };
}

/** `HOST:PORT` (IPv6 as `[::1]:6443`); a clear error naming --listen otherwise. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`--listen must be HOST:PORT (e.g. 127.0.0.1:6443), got "${text}"`);
  return { host: m[1]!, port };
}

/** The address clients dial for a listen host: a wildcard listens everywhere, dial loopback. */
export function dialHost(host: string): string {
  if (host === "0.0.0.0" || host === "") return "127.0.0.1";
  if (host === "::") return "::1";
  return host;
}

export function serverUrl(host: string, port: number): string {
  const h = dialHost(host);
  return `https://${isIP(h) === 6 ? `[${h}]` : h}:${port}`;
}

/** What every certificate in DIR must say, for a server listening on `host`. Pure. */
export function standaloneCertSpecs(host: string): CertSpec[] {
  const h = dialHost(host);
  const dns = ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "localhost"];
  const ips = ["127.0.0.1"];
  if (isIP(h)) ips.push(h);
  else dns.push(h);
  if (host === "::" || isIP(h) === 6) ips.push("::1");
  const uniq = (xs: string[]): string[] => [...new Set(xs)].sort();
  return [
    { id: "apiserver", ca: "ca", cn: "lab-server", usages: ["server"], dns: uniq(dns), ips: uniq(ips) },
    { id: "admin", ca: "ca", cn: "lab-admin", o: ["system:masters"], usages: ["client"] },
    {
      id: "controller-manager",
      ca: "ca",
      cn: "system:lab-controller-manager",
      o: ["system:masters"],
      usages: ["client"],
    },
    {
      id: "apiserver-kubelet-client",
      ca: "ca",
      cn: "lab-apiserver-kubelet-client",
      o: ["system:masters"],
      usages: ["client"],
    },
  ];
}

export function nodeCertSpec(name: string): CertSpec {
  return {
    id: `nodes/${name}`,
    ca: "ca",
    cn: `system:node:${name}`,
    o: ["system:nodes"],
    usages: ["client"],
  };
}

/** SHA-256 over the DER of a PEM certificate, `AA:BB:...` as openssl prints it. */
export function fingerprint(pem: string): string {
  const der = Buffer.from(new x509.X509Certificate(pem).rawData);
  return createHash("sha256").update(der).digest("hex").toUpperCase().match(/../g)?.join(":") ?? "";
}

async function readPair(dir: string, id: string): Promise<KeyPairPem | undefined> {
  const crt = join(dir, `${id}.crt`);
  const key = join(dir, `${id}.key`);
  if (!existsSync(crt) || !existsSync(key)) return undefined;
  return { cert: await readFile(crt, "utf8"), key: await readFile(key, "utf8") };
}

async function writePair(dir: string, id: string, pair: KeyPairPem): Promise<void> {
  await writeFileAtomic(join(dir, `${id}.key`), pair.key, 0o600);
  await writeFileAtomic(join(dir, `${id}.crt`), pair.cert, 0o644);
}

/** True when a certificate still says what `spec` asks (subject, SANs) and is signed by `ca`. */
async function satisfies(pair: KeyPairPem, spec: CertSpec, ca: CertificateAuthority): Promise<boolean> {
  if (!(await verifiedBy(pair.cert, ca.cert))) return false;
  const c = new x509.X509Certificate(pair.cert);
  const soon = new Date(Date.now() + 30 * 86_400_000);
  if (c.notAfter < soon) return false;
  if (!c.subject.includes(`CN=${spec.cn}`)) return false;
  const san = c.getExtension(x509.SubjectAlternativeNameExtension);
  const names = new Set((san?.names.items ?? []).map((n) => n.value));
  return [...(spec.dns ?? []), ...(spec.ips ?? [])].every((n) => names.has(n));
}

export interface PkiOutcome {
  paths: StandalonePaths;
  ca: CertificateAuthority;
  issued: string[];
  reused: string[];
}

/** Loads DIR's CA or creates it; without a CA key nothing can be issued. */
async function loadOrCreateCA(
  dir: string,
  issued: string[],
  reused: string[],
): Promise<CertificateAuthority> {
  const existing = await readPair(dir, "ca");
  if (existing) {
    reused.push("ca");
    return loadCA(existing);
  }
  if (existsSync(join(dir, "ca.crt")))
    throw new Error(`--cert-dir ${dir} has ca.crt but no ca.key: restore the key or use an empty directory`);
  const ca = await createCA("lab standalone CA");
  await writePair(dir, "ca", ca);
  issued.push("ca");
  return ca;
}

/**
 * Creates what is missing in DIR (the CA first) and reuses the rest: a second start with the same
 * host issues nothing. A serving certificate that does not name `host` is reissued from the same CA.
 */
export async function ensureStandalonePki(dir: string, host: string): Promise<PkiOutcome> {
  const issued: string[] = [];
  const reused: string[] = [];
  const ca = await loadOrCreateCA(dir, issued, reused);
  for (const spec of standaloneCertSpecs(host)) {
    const existing = await readPair(dir, spec.id);
    if (existing && (await satisfies(existing, spec, ca))) {
      reused.push(spec.id);
      continue;
    }
    await writePair(dir, spec.id, await issueCertificate(spec, ca));
    issued.push(spec.id);
  }
  return { paths: standalonePaths(dir), ca, issued, reused };
}

/**
 * The key that signs service-account tokens, `DIR/sa.key` (EC P-256, PKCS#8, 0600), made once and
 * kept: a restart, or a new serving certificate, leaves every issued token valid.
 */
export async function ensureServiceAccountKey(dir: string): Promise<{ path: string; created: boolean }> {
  const path = join(dir, "sa.key");
  if (existsSync(path)) return { path, created: false };
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  await writeFileAtomic(path, privateKey.export({ type: "pkcs8", format: "pem" }) as string, 0o600);
  return { path, created: true };
}

/** A kubeconfig with everything embedded (CA, client certificate and key). */
export function embeddedKubeconfig(server: string, user: string, ca: string, pair: KeyPairPem): string {
  return renderKubeconfig({
    cluster: CLUSTER_NAME,
    user,
    server,
    ca: { pem: ca },
    cert: { pem: pair.cert },
    key: { pem: pair.key },
  });
}

export async function writeKubeconfigFile(file: string, text: string): Promise<void> {
  await writeFileAtomic(file, text, 0o600);
}

export async function adminKubeconfig(dir: string, server: string): Promise<string> {
  const p = standalonePaths(dir);
  const pair = { cert: await readFile(p.adminCert, "utf8"), key: await readFile(p.adminKey, "utf8") };
  return embeddedKubeconfig(server, "admin", await readFile(p.caCert, "utf8"), pair);
}

export async function loopsKubeconfig(dir: string, server: string): Promise<string> {
  const p = standalonePaths(dir);
  const pair = { cert: await readFile(p.loopsCert, "utf8"), key: await readFile(p.loopsKey, "utf8") };
  return embeddedKubeconfig(server, "controller-manager", await readFile(p.caCert, "utf8"), pair);
}

/** Node names as Kubernetes allows them (a DNS subdomain). */
const NODE_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * A node's client certificate (system:node:NAME in system:nodes) signed by DIR's CA, reused when
 * already issued, and the kubeconfig a lab-agent joins with.
 */
export async function issueNodeKubeconfig(
  dir: string,
  name: string,
  server?: string,
): Promise<{ kubeconfig: string; issued: boolean; server: string }> {
  if (!NODE_NAME.test(name) || name.length > 253)
    throw new Error(
      `node name "${name}" is not a valid DNS subdomain: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit`,
    );
  const p = standalonePaths(dir);
  if (!existsSync(p.caCert) || !existsSync(p.caKey))
    throw new Error(
      `--cert-dir ${dir} has no CA (ca.crt, ca.key): start lab-server with --cert-dir ${dir} first`,
    );
  const url =
    server ?? (existsSync(p.endpoint) ? (await readFile(p.endpoint, "utf8")).trim() : undefined) ?? undefined;
  if (!url)
    throw new Error(
      `no --server given and ${p.endpoint} does not exist: start lab-server with --cert-dir ${dir} first, or pass --server URL`,
    );
  const ca = await loadCA({ cert: await readFile(p.caCert, "utf8"), key: await readFile(p.caKey, "utf8") });
  const spec = nodeCertSpec(name);
  let pair = await readPair(dir, spec.id);
  let issued = false;
  if (!pair || !(await satisfies(pair, spec, ca))) {
    pair = await issueCertificate(spec, ca);
    await writePair(dir, spec.id, pair);
    issued = true;
  }
  return { kubeconfig: embeddedKubeconfig(url, `system:node:${name}`, ca.cert, pair), issued, server: url };
}
