import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** File paths of a throwaway CA and certificates made with the openssl CLI (tests only). */
export interface TestPki {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  /** Issues a client certificate (CN = user, O = groups); returns its cert and key paths. */
  client(name: string, user: string, groups: string[]): Promise<{ cert: string; key: string }>;
  cleanup(): Promise<void>;
}

async function openssl(args: string[]): Promise<void> {
  await run("openssl", args);
}

/** openssl req arguments for a new unencrypted P-256 key. */
const NEW_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

export async function makeTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), "lab-pki-"));
  const p = (f: string): string => join(dir, f);
  await openssl([
    "req",
    "-x509",
    ...NEW_EC_KEY,
    "-keyout",
    p("ca.key"),
    "-out",
    p("ca.crt"),
    "-days",
    "2",
    "-subj",
    "/CN=lab-test-ca",
  ]);
  const issue = async (name: string, subj: string, ext: string): Promise<{ cert: string; key: string }> => {
    await writeFile(p(`${name}.ext`), ext);
    await openssl([
      "req",
      ...NEW_EC_KEY,
      "-keyout",
      p(`${name}.key`),
      "-out",
      p(`${name}.csr`),
      "-subj",
      subj,
    ]);
    await openssl([
      "x509",
      "-req",
      "-in",
      p(`${name}.csr`),
      "-CA",
      p("ca.crt"),
      "-CAkey",
      p("ca.key"),
      "-CAcreateserial",
      "-out",
      p(`${name}.crt`),
      "-days",
      "2",
      "-extfile",
      p(`${name}.ext`),
    ]);
    return { cert: p(`${name}.crt`), key: p(`${name}.key`) };
  };
  const server = await issue(
    "server",
    "/CN=lab-server",
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
  );
  return {
    dir,
    caCert: p("ca.crt"),
    caKey: p("ca.key"),
    serverCert: server.cert,
    serverKey: server.key,
    client: (name, user, groups) =>
      issue(name, `/CN=${user}${groups.map((g) => `/O=${g}`).join("")}`, "extendedKeyUsage=clientAuth\n"),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
