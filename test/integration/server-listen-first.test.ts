/**
 * lab-server listens before anything waits on etcd: against an "etcd" that takes the connection
 * and never answers, the health port and the API port serve at once with /readyz 503 saying why,
 * and start does not fail (it used to throw from ensureDefaults, so systemd restarted the whole
 * process again and again: 44–111 s from `systemctl start` to serving in a TCG guest). Once etcd
 * answers, the default objects appear and /readyz turns 200 without a restart.
 */
import { readFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer } from "../../controlplane/main.ts";
import { startEtcd, type TestEtcd } from "../helpers/etcd.ts";
import { makeTestPki, type TestPki } from "../helpers/test-pki.ts";

let pki: TestPki;
let hold: Server;
const held: Socket[] = [];
let etcd: TestEtcd | undefined;

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });

function healthGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, path, timeout: 2_000 }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error("no answer within 2 s")));
    req.on("error", reject);
    req.end();
  });
}

async function apiGet(port: number, path: string): Promise<number> {
  const admin = await pki.client("admin", "admin", ["system:masters"]);
  const [ca, cert, key] = await Promise.all([
    readFile(pki.caCert),
    readFile(admin.cert),
    readFile(admin.key),
  ]);
  return new Promise<number>((resolve, reject) => {
    const req = httpsRequest({ host: "127.0.0.1", port, path, ca, cert, key, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

async function until<T>(ms: number, fn: () => Promise<T | undefined>): Promise<T | undefined> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  pki = await makeTestPki();
  hold = await new Promise<Server>((resolve) => {
    const s = createServer((c) => held.push(c.on("error", () => undefined)));
    s.listen(0, "127.0.0.1", () => resolve(s));
  });
});

afterAll(async () => {
  for (const c of held) c.destroy();
  await new Promise((r) => hold?.close(r));
  await etcd?.stop();
  await pki?.cleanup();
});

/** lab-server's flags on the test PKI, 127.0.0.1:`securePort` and health port `healthPort`, over `etcdServers`. */
const serverFlags = (etcdServers: string, securePort: number, healthPort: number) => ({
  etcdServers,
  tlsCertFile: pki.serverCert,
  tlsPrivateKeyFile: pki.serverKey,
  clientCaFile: pki.caCert,
  bindAddress: "127.0.0.1",
  securePort: String(securePort),
  healthPort: String(healthPort),
  serviceClusterIpRange: "10.96.0.0/16",
});

describe("lab-server start", () => {
  it("serves /readyz 503 at once while etcd never answers, and does not fail", async () => {
    const [securePort, healthPort] = [await freePort(), await freePort()];
    const started = Date.now();
    const starting = startServer(
      serverFlags(`http://127.0.0.1:${(hold.address() as { port: number }).port}`, securePort, healthPort),
    ).then(
      (r) => ({ ok: true as const, r }),
      (err: unknown) => ({ ok: false as const, err: err as Error }),
    );
    // The health port answers long before etcd's 8 s call deadline could pass.
    const first = await until(5_000, () => healthGet(healthPort, "/readyz"));
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(first?.status).toBe(503);
    expect(first?.body).toMatch(/default objects not created yet|etcd has not answered/);
    // The API port takes TLS connections too (kubectl gets 503, not "connection refused").
    const api = await until(5_000, () => apiGet(securePort, "/readyz"));
    expect(api).toBe(503);
    const result = await starting;
    expect(result.ok, result.ok ? "" : result.err.message).toBe(true);
    if (result.ok) {
      expect((await healthGet(healthPort, "/readyz")).status).toBe(503);
      await result.r.server.stop();
      await result.r.store.close();
    }
  }, 40_000);

  it("becomes ready with the default objects once etcd answers", async () => {
    etcd = await startEtcd();
    const [securePort, healthPort] = [await freePort(), await freePort()];
    const { server, store } = await startServer(serverFlags(etcd.endpoint, securePort, healthPort));
    try {
      const ready = await until(10_000, async () => {
        const r = await healthGet(healthPort, "/readyz");
        return r.status === 200 ? r : undefined;
      });
      expect(ready?.body).toBe("ok");
      expect(await apiGet(securePort, "/api/v1/namespaces/default")).toBe(200);
      expect(await apiGet(securePort, "/api/v1/namespaces/default/services/kubernetes")).toBe(200);
    } finally {
      await server.stop();
      await store.close();
    }
  }, 40_000);
});
