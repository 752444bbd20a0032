import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ApiServer } from "../../controlplane/apiserver.ts";
import type { ApiServerOptions } from "../../controlplane/server/server.ts";
import { EtcdStore } from "../../controlplane/storage/etcd-store.ts";
import { startEtcd, type TestEtcd } from "./etcd.ts";
import { makeTestPki, type TestPki } from "./test-pki.ts";
import { readFile } from "node:fs/promises";

/** etcd + lab-server in-process on free loopback ports, with an admin kubeconfig in a temp dir. */
export interface TestApiServer {
  url: string;
  port: number;
  etcd: TestEtcd;
  store: EtcdStore;
  server: ApiServer;
  pki: TestPki;
  kubeconfig: string;
  admin: { cert: string; key: string };
  stop(): Promise<void>;
}

export function kubeconfigYaml(
  url: string,
  caCert: string,
  cert: string,
  key: string,
  user = "admin",
): string {
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: lab",
    "  cluster:",
    `    server: ${url}`,
    `    certificate-authority: ${caCert}`,
    "users:",
    `- name: ${user}`,
    "  user:",
    `    client-certificate: ${cert}`,
    `    client-key: ${key}`,
    "contexts:",
    "- name: lab",
    "  context:",
    "    cluster: lab",
    `    user: ${user}`,
    "current-context: lab",
    "",
  ].join("\n");
}

/** What every test API server shares: the store, the service range, loopback and the test PKI's serving pair. */
export async function testServerOptions(store: EtcdStore, pki: TestPki): Promise<ApiServerOptions> {
  return {
    store,
    serviceClusterIpRange: "10.96.0.0/24",
    advertiseAddress: "127.0.0.1",
    securePort: 6443,
    tls: {
      cert: await readFile(pki.serverCert),
      key: await readFile(pki.serverKey),
      clientCa: await readFile(pki.caCert),
    },
  };
}

export async function startTestApiServer(opts: { bookmarkIntervalMs?: number } = {}): Promise<TestApiServer> {
  const etcd = await startEtcd();
  const pki = await makeTestPki();
  const store = new EtcdStore({ hosts: etcd.endpoint });
  const admin = await pki.client("admin", "admin", ["system:masters"]);
  const server = new ApiServer({
    ...(await testServerOptions(store, pki)),
    bookmarkIntervalMs: opts.bookmarkIntervalMs,
  });
  const port = await server.start("127.0.0.1", 0);
  const url = `https://127.0.0.1:${port}`;
  const kubeconfig = join(pki.dir, "admin.kubeconfig");
  await writeFile(kubeconfig, kubeconfigYaml(url, pki.caCert, admin.cert, admin.key), { mode: 0o600 });
  return {
    url,
    port,
    etcd,
    store,
    server,
    pki,
    kubeconfig,
    admin,
    async stop() {
      await server.stop().catch(() => undefined);
      await store.close().catch(() => undefined);
      await etcd.stop();
      await pki.cleanup();
    },
  };
}
