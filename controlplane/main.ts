import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Command, CommanderError } from "commander";
import { ApiServer } from "./apiserver.ts";
import { EtcdStore } from "./storage/etcd-store.ts";
import { addLoopOptions, runLoopsFromFlags, type LoopFlags } from "./loops-main.ts";
import {
  adminKubeconfig,
  ensureServiceAccountKey,
  ensureStandalonePki,
  fingerprint,
  issueNodeKubeconfig,
  loopsKubeconfig,
  parseListen,
  serverUrl,
  writeKubeconfigFile,
} from "./standalone.ts";
import { writeFileAtomic } from "../topology/state.ts";
import { parseDuration } from "../cli/duration.ts";

/** `lab-server`: the API server process. Flags follow kube-apiserver's names. */
export interface ServerFlags {
  etcdServers: string;
  etcdCafile?: string;
  etcdCertfile?: string;
  etcdKeyfile?: string;
  tlsCertFile?: string;
  tlsPrivateKeyFile?: string;
  clientCaFile?: string;
  bindAddress: string;
  securePort: string;
  serviceClusterIpRange: string;
  advertiseAddress?: string;
  kubeletClientCertificate?: string;
  kubeletClientKey?: string;
  kubeletCertificateAuthority?: string;
  healthPort?: string;
  /** kube-apiserver's --etcd-compaction-interval: `5m`, `90s`, `0` (never). */
  etcdCompactionInterval?: string;
  /** PEM private key that signs service-account tokens (default: --service-account-key-file, else the serving key). */
  serviceAccountSigningKeyFile?: string;
  /** PEM keys that verify service-account tokens (default: the signing key). */
  serviceAccountKeyFile?: string;
  serviceAccountIssuer?: string;
}

/** The standalone flags: certificates made and kept in one directory, a kubeconfig written. */
export interface StandaloneFlags {
  listen?: string;
  certDir?: string;
  writeKubeconfig?: string;
  json?: boolean;
}

export async function startServer(
  flags: ServerFlags,
): Promise<{ server: ApiServer; store: EtcdStore; port: number }> {
  const hosts = flags.etcdServers
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const credentials =
    flags.etcdCafile && flags.etcdCertfile && flags.etcdKeyfile
      ? {
          rootCertificate: await readFile(flags.etcdCafile),
          certChain: await readFile(flags.etcdCertfile),
          privateKey: await readFile(flags.etcdKeyfile),
        }
      : flags.etcdCafile
        ? { rootCertificate: await readFile(flags.etcdCafile) }
        : undefined;
  const store = new EtcdStore(credentials ? { hosts, credentials } : { hosts });
  const port = Number(flags.securePort);
  const advertiseAddress =
    flags.advertiseAddress ?? (flags.bindAddress === "0.0.0.0" ? "127.0.0.1" : flags.bindAddress);
  const server = new ApiServer({
    store,
    serviceClusterIpRange: flags.serviceClusterIpRange,
    compactionIntervalMs: compactionInterval(flags.etcdCompactionInterval),
    advertiseAddress,
    securePort: port,
    tls: {
      cert: await readFile(required(flags.tlsCertFile, "--tls-cert-file")),
      key: await readFile(required(flags.tlsPrivateKeyFile, "--tls-private-key-file")),
      clientCa: await readFile(required(flags.clientCaFile, "--client-ca-file")),
    },
    ...(flags.kubeletClientCertificate && flags.kubeletClientKey
      ? {
          kubeletClient: {
            cert: await readFile(flags.kubeletClientCertificate),
            key: await readFile(flags.kubeletClientKey),
            ca: await readFile(
              flags.kubeletCertificateAuthority ?? required(flags.clientCaFile, "--client-ca-file"),
            ),
          },
        }
      : {}),
    serviceAccount: await serviceAccountKeys(flags),
  });
  // The health port (/readyz 503 until ready) and the API together: both listen before anything
  // waits on etcd, so keepalived and the bootstrap see "starting", not "connection refused"; the
  // health thread's start (slow in a starved TCG guest) does not hold the API back.
  const healthPort = Number(flags.healthPort ?? "0");
  const [bound] = await Promise.all([
    server.start(flags.bindAddress, port),
    healthPort > 0 ? server.startHealth("127.0.0.1", healthPort) : undefined,
  ]);
  return { server, store, port: bound };
}

/** `0` (or `0s`...) turns compaction off, as in kube-apiserver; anything else is a duration. */
export function compactionInterval(text: string | undefined): number {
  if (text === undefined) return 5 * 60_000;
  if (/^0+(?:\.0+)?(?:ms|s|m|h)?$/.test(text.trim())) return 0;
  return parseDuration(text, "--etcd-compaction-interval");
}

/**
 * The service-account keys, as kube-apiserver reads its flags: the signing key from
 * --service-account-signing-key-file, else --service-account-key-file, else the serving key
 * (--tls-private-key-file, one key on every master of a lab); verification keys from
 * --service-account-key-file, else the signing key's own.
 */
async function serviceAccountKeys(
  flags: ServerFlags,
): Promise<{ signingKey: Buffer; verifyKeys?: Buffer; issuer?: string }> {
  const signingFile =
    flags.serviceAccountSigningKeyFile ??
    flags.serviceAccountKeyFile ??
    required(flags.tlsPrivateKeyFile, "--tls-private-key-file");
  const signingKey = await readFile(signingFile);
  if (!/PRIVATE KEY-----/.test(signingKey.toString()))
    throw new Error(
      `${signingFile} holds no private key: give --service-account-signing-key-file (the key that signs service-account tokens)`,
    );
  return {
    signingKey,
    ...(flags.serviceAccountKeyFile ? { verifyKeys: await readFile(flags.serviceAccountKeyFile) } : {}),
    ...(flags.serviceAccountIssuer ? { issuer: flags.serviceAccountIssuer } : {}),
  };
}

function required(v: string | undefined, flag: string): string {
  if (!v)
    throw new Error(`${flag} is required (or give --cert-dir DIR to make and keep the certificates there)`);
  return v;
}

export function serverCommand(): Command {
  return addLoopOptions(serverCommand0());
}

function serverCommand0(): Command {
  return new Command("lab-server")
    .description("Kubernetes-compatible API server over etcd")
    .requiredOption("--etcd-servers <urls>", "comma-separated etcd client URLs")
    .option("--etcd-cafile <file>", "CA that signed the etcd server certificates")
    .option("--etcd-certfile <file>", "client certificate for etcd")
    .option("--etcd-keyfile <file>", "client key for etcd")
    .option("--tls-cert-file <file>", "serving certificate (required without --cert-dir)")
    .option("--tls-private-key-file <file>", "serving key (required without --cert-dir)")
    .option(
      "--client-ca-file <file>",
      "CA that client certificates must chain to (required without --cert-dir)",
    )
    .option(
      "--cert-dir <dir>",
      "standalone: make the CA, serving, admin and kubelet-client certificates here (reused when present)",
    )
    .option(
      "--listen <host:port>",
      "standalone: address and port to listen on (instead of --bind-address/--secure-port)",
    )
    .option("--write-kubeconfig <file>", "standalone: write the admin kubeconfig here (needs --cert-dir)")
    .option("--json", "progress as JSON lines on stdout")
    .option("--bind-address <ip>", "address to listen on", "0.0.0.0")
    .option("--secure-port <port>", "HTTPS port", "6443")
    .option("--health-port <port>", "plain-HTTP /readyz, /livez, /healthz on 127.0.0.1 (0: off)", "0")
    .option("--service-cluster-ip-range <cidr>", "CIDR for Service ClusterIPs", "10.96.0.0/12")
    .option(
      "--etcd-compaction-interval <duration>",
      "compact etcd's history to the revision of one interval ago, one apiserver per round (0: never)",
      "5m",
    )
    .option("--advertise-address <ip>", "address published in the kubernetes service endpoints")
    .option(
      "--kubelet-client-certificate <file>",
      "client certificate for the node agents (pods/log, pods/exec)",
    )
    .option("--kubelet-client-key <file>", "its key")
    .option(
      "--kubelet-certificate-authority <file>",
      "CA of the node agents' serving certificates (default: --client-ca-file)",
    )
    .option(
      "--service-account-signing-key-file <file>",
      "PEM private key (RSA or EC) that signs service-account tokens (default: --service-account-key-file, else --tls-private-key-file; standalone: DIR/sa.key)",
    )
    .option(
      "--service-account-key-file <file>",
      "PEM keys or certificates that verify service-account tokens (default: the signing key)",
    )
    .option(
      "--service-account-issuer <url>",
      "iss of the tokens issued and accepted (default: https://kubernetes.default.svc.cluster.local)",
    )
    .addHelpText(
      "after",
      `
Standalone (a laptop, a test, a scale bench):
  lab-server --etcd-servers http://127.0.0.1:2379 --listen 127.0.0.1:6443 \\
    --cert-dir ./pki --write-kubeconfig ./kubeconfig
  The scheduler and controllers run with the certificates in --cert-dir (no --kubeconfig needed),
  node IPAM carves ${STANDALONE_CLUSTER_CIDR} unless --cluster-cidr says otherwise.

  lab-server issue-node-cert NAME --cert-dir DIR [--out FILE] [--server URL]
  writes a kubeconfig for a node agent (system:node:NAME in system:nodes).`,
    );
}

/** The pod network node IPAM carves in standalone mode: /24s for 32,768 nodes, clear of 10.96.0.0/12. */
export const STANDALONE_CLUSTER_CIDR = "10.128.0.0/9";

type Progress = (event: string, text: string, data?: Record<string, unknown>) => void;

function progress(json: boolean | undefined): Progress {
  return (event, text, data = {}) => {
    if (json) process.stdout.write(`${JSON.stringify({ event, message: text, ...data })}\n`);
    else process.stderr.write(`lab-server: ${text}\n`);
  };
}

/**
 * Checks flag combinations of the standalone mode and fills in what it implies (certificate
 * paths, bind address and port). Throws with the flag to fix.
 */
async function applyStandalone(
  cmd: Command,
  flags: ServerFlags & StandaloneFlags & LoopFlags,
  say: Progress,
): Promise<{ certDir?: string }> {
  const fromCli = (k: string): boolean => cmd.getOptionValueSource(k) === "cli";
  if (flags.listen !== undefined) {
    for (const [k, flag] of [
      ["bindAddress", "--bind-address"],
      ["securePort", "--secure-port"],
    ] as const)
      if (fromCli(k)) throw new Error(`--listen and ${flag} both say where to listen: give one of them`);
    const { host, port } = parseListen(flags.listen);
    flags.bindAddress = host;
    flags.securePort = String(port);
  }
  if (flags.writeKubeconfig !== undefined && flags.certDir === undefined)
    throw new Error("--write-kubeconfig needs --cert-dir DIR (the admin certificate is made and kept there)");
  if (flags.certDir === undefined) return {}; // startServer names a missing --tls-* flag
  for (const [k, flag] of [
    ["tlsCertFile", "--tls-cert-file"],
    ["tlsPrivateKeyFile", "--tls-private-key-file"],
    ["clientCaFile", "--client-ca-file"],
    ["kubeletClientCertificate", "--kubelet-client-certificate"],
    ["kubeletClientKey", "--kubelet-client-key"],
  ] as const)
    if (flags[k] !== undefined)
      throw new Error(`--cert-dir makes its own certificates; ${flag} cannot be combined with it`);
  const dir = flags.certDir;
  const pki = await ensureStandalonePki(dir, flags.bindAddress);
  const verb = pki.issued.length === 0 ? "reused" : pki.issued.includes("ca") ? "created" : "updated";
  say("certificates", `certificates in ${dir} ${verb} (CA ${fingerprint(pki.ca.cert)})`, {
    dir,
    issued: pki.issued,
    reused: pki.reused,
    caFingerprint: fingerprint(pki.ca.cert),
  });
  const p = pki.paths;
  flags.tlsCertFile = p.servingCert;
  flags.tlsPrivateKeyFile = p.servingKey;
  flags.clientCaFile = p.caCert;
  flags.kubeletClientCertificate = p.kubeletClientCert;
  flags.kubeletClientKey = p.kubeletClientKey;
  flags.clusterCidr ??= STANDALONE_CLUSTER_CIDR;
  if (flags.serviceAccountSigningKeyFile === undefined && flags.serviceAccountKeyFile === undefined) {
    const sa = await ensureServiceAccountKey(dir);
    flags.serviceAccountSigningKeyFile = sa.path;
    if (sa.created)
      say("certificates", `service-account signing key created in ${sa.path}`, { path: sa.path });
  }
  return { certDir: dir };
}

function issueNodeCertCommand(): Command {
  return new Command("issue-node-cert")
    .description("issue a node client certificate (system:node:NAME) and write its kubeconfig")
    .argument("<name>", "the node's name")
    .requiredOption("--cert-dir <dir>", "the directory lab-server --cert-dir keeps its CA in")
    .option("--out <file>", "write the kubeconfig here (0600) instead of stdout")
    .option("--server <url>", "API server URL (default: where lab-server last listened)");
}

async function issueNodeCert(argv: string[]): Promise<void> {
  const cmd = issueNodeCertCommand().exitOverride();
  try {
    cmd.parse(argv, { from: "user" });
  } catch (err) {
    process.exit(err instanceof CommanderError ? err.exitCode : 1);
  }
  const name = cmd.args[0]!;
  const o = cmd.opts<{ certDir: string; out?: string; server?: string }>();
  try {
    const r = await issueNodeKubeconfig(o.certDir, name, o.server);
    if (o.out) {
      await writeKubeconfigFile(o.out, r.kubeconfig);
      process.stderr.write(
        `lab-server: ${r.issued ? "issued" : "reused"} system:node:${name}; kubeconfig for ${r.server} written to ${o.out}\n`,
      );
    } else process.stdout.write(r.kubeconfig);
  } catch (err) {
    process.stderr.write(`lab-server issue-node-cert: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

/** The lab-server command: `argv` as process.argv (node, script, args...). */
export async function main(argv: string[] = process.argv): Promise<void> {
  if (argv[2] === "issue-node-cert") return issueNodeCert(argv.slice(3));
  const cmd = serverCommand();
  cmd.parse(argv);
  const flags = cmd.opts<ServerFlags & StandaloneFlags & LoopFlags>();
  const say = progress(flags.json);
  try {
    const { certDir } = await applyStandalone(cmd, flags, say);
    const { server, store, port } = await startServer(flags);
    const url = serverUrl(flags.bindAddress, port);
    say("listening", `listening on https://${flags.bindAddress}:${port}`, { url, port });
    if (certDir) {
      await writeFileAtomic(join(certDir, "endpoint"), `${url}\n`, 0o644);
      if (!flags.kubeconfig) {
        // The scheduler and controllers reach this server with their own certificate from DIR.
        flags.kubeconfig = join(certDir, "controller-manager.kubeconfig");
        await writeKubeconfigFile(flags.kubeconfig, await loopsKubeconfig(certDir, url));
      }
      if (flags.writeKubeconfig) {
        await writeKubeconfigFile(flags.writeKubeconfig, await adminKubeconfig(certDir, url));
        say("kubeconfig", `admin kubeconfig written to ${flags.writeKubeconfig}`, {
          path: flags.writeKubeconfig,
        });
      }
    }
    // Scheduler and controllers (leader-elected), as the --kubeconfig's user, call this server
    // in-process: the same authorization, admission and validation without HTTPS to itself.
    const loopsStop = new AbortController();
    const loops = runLoopsFromFlags(
      flags,
      loopsStop.signal,
      (line) => say("loops", line),
      server.local,
    ).catch((err: unknown) => say("error", `control loops: ${(err as Error).message}`));
    const shutdown = (): void => {
      loopsStop.abort(); // releases the leader leases so another master takes over at once
      void loops
        .then(() => server.stop())
        .then(() => store.close())
        .then(() => process.exit(0));
    };
    process.on("SIGTERM", shutdown);
    process.on("SIGINT", shutdown);
  } catch (err) {
    say("error", (err as Error).message);
    process.exit(1);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) void main();
