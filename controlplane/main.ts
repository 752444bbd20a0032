import { readFile } from "node:fs/promises";
import { Command } from "commander";
import { ApiServer } from "./apiserver.ts";
import { EtcdStore } from "./storage/etcd-store.ts";
import { addLoopOptions, runLoopsFromFlags, type LoopFlags } from "./loops-main.ts";

/** `lab-server`: the API server process. Flags follow kube-apiserver's names. */
export interface ServerFlags {
  etcdServers: string;
  etcdCafile?: string;
  etcdCertfile?: string;
  etcdKeyfile?: string;
  tlsCertFile: string;
  tlsPrivateKeyFile: string;
  clientCaFile: string;
  bindAddress: string;
  securePort: string;
  serviceClusterIpRange: string;
  advertiseAddress?: string;
  kubeletClientCertificate?: string;
  kubeletClientKey?: string;
  kubeletCertificateAuthority?: string;
  healthPort?: string;
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
    advertiseAddress,
    securePort: port,
    tls: {
      cert: await readFile(flags.tlsCertFile),
      key: await readFile(flags.tlsPrivateKeyFile),
      clientCa: await readFile(flags.clientCaFile),
    },
    ...(flags.kubeletClientCertificate && flags.kubeletClientKey
      ? {
          kubeletClient: {
            cert: await readFile(flags.kubeletClientCertificate),
            key: await readFile(flags.kubeletClientKey),
            ca: await readFile(flags.kubeletCertificateAuthority ?? flags.clientCaFile),
          },
        }
      : {}),
  });
  // The health port first (/readyz 503 until ready), then the API: both listen before anything
  // waits on etcd, so keepalived and the bootstrap see "starting", not "connection refused".
  const healthPort = Number(flags.healthPort ?? "0");
  if (healthPort > 0) await server.startHealth("127.0.0.1", healthPort);
  const bound = await server.start(flags.bindAddress, port);
  return { server, store, port: bound };
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
    .requiredOption("--tls-cert-file <file>", "serving certificate")
    .requiredOption("--tls-private-key-file <file>", "serving key")
    .requiredOption("--client-ca-file <file>", "CA that client certificates must chain to")
    .option("--bind-address <ip>", "address to listen on", "0.0.0.0")
    .option("--secure-port <port>", "HTTPS port", "6443")
    .option("--health-port <port>", "plain-HTTP /readyz, /livez, /healthz on 127.0.0.1 (0: off)", "0")
    .option("--service-cluster-ip-range <cidr>", "CIDR for Service ClusterIPs", "10.96.0.0/12")
    .option("--advertise-address <ip>", "address published in the kubernetes service endpoints")
    .option(
      "--kubelet-client-certificate <file>",
      "client certificate for the node agents (pods/log, pods/exec)",
    )
    .option("--kubelet-client-key <file>", "its key")
    .option(
      "--kubelet-certificate-authority <file>",
      "CA of the node agents' serving certificates (default: --client-ca-file)",
    );
}

async function main(): Promise<void> {
  const cmd = serverCommand();
  cmd.parse(process.argv);
  const flags = cmd.opts<ServerFlags>();
  try {
    const { server, store, port } = await startServer(flags);
    process.stderr.write(`lab-server listening on https://${flags.bindAddress}:${port}\n`);
    // Scheduler and controllers (leader-elected) talk to the API like any client, through --kubeconfig.
    const loopsStop = new AbortController();
    const loops = runLoopsFromFlags(cmd.opts<LoopFlags>(), loopsStop.signal, (line) =>
      process.stderr.write(`lab-server: ${line}\n`),
    ).catch((err: unknown) => process.stderr.write(`lab-server: control loops: ${(err as Error).message}\n`));
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
    process.stderr.write(`lab-server: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) void main();
