/**
 * lab-agent's API client against real TLS endpoints on loopback: a dead address is skipped for one
 * that answers (which then stays preferred), and when none answers the error names every address.
 */
import { readFile } from "node:fs/promises";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import { createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FailoverClient, NoServerAnswered } from "../../node/api/failover.ts";
import { makeTestPki, type TestPki } from "../helpers/test-pki.ts";

/** A port on loopback with nothing listening (connections are refused at once). */
async function closedPort(): Promise<number> {
  const srv: Server = createServer();
  const port = await new Promise<number>((resolve) =>
    srv.listen(0, "127.0.0.1", () => resolve((srv.address() as { port: number }).port)),
  );
  await new Promise((r) => srv.close(r));
  return port;
}

let pki: TestPki;
let api: HttpsServer;
let apiPort = 0;
let creds: { ca: Buffer; cert: Buffer; key: Buffer };
const clients: FailoverClient[] = [];

beforeAll(async () => {
  pki = await makeTestPki();
  const node = await pki.client("node", "system:node:worker-1", ["system:nodes"]);
  creds = {
    ca: await readFile(pki.caCert),
    cert: await readFile(node.cert),
    key: await readFile(node.key),
  };
  api = createHttpsServer(
    { cert: await readFile(pki.serverCert), key: await readFile(pki.serverKey) },
    (_req, res) => {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ kind: "Node", apiVersion: "v1", metadata: { name: "worker-1" } }));
    },
  );
  apiPort = await new Promise<number>((resolve) =>
    api.listen(0, "127.0.0.1", () => resolve((api.address() as { port: number }).port)),
  );
});

afterAll(async () => {
  clients.forEach((c) => c.close());
  api?.closeAllConnections();
  await new Promise((r) => api?.close(r));
  await pki?.cleanup();
});

describe("the agent's failover API client", () => {
  it("goes past a dead address to one that answers, and keeps using that one", async () => {
    const dead = `https://127.0.0.1:${await closedPort()}`;
    const live = `https://127.0.0.1:${apiPort}`;
    const c = new FailoverClient([dead, live], creds);
    clients.push(c);
    expect((await c.get("nodes", "worker-1")).metadata?.name).toBe("worker-1");
    expect(c.current).toBe(live);
  });

  it("names every address and its failure when none answers", async () => {
    const [a, b] = [await closedPort(), await closedPort()];
    const c = new FailoverClient([`https://127.0.0.1:${a}`, `https://127.0.0.1:${b}`], creds);
    clients.push(c);
    const err = (await c.get("nodes", "worker-1").catch((e: unknown) => e)) as NoServerAnswered;
    expect(err).toBeInstanceOf(NoServerAnswered);
    expect(err.failures).toHaveLength(2);
    expect(err.message).toContain(`https://127.0.0.1:${a}: connect ECONNREFUSED 127.0.0.1:${a}`);
    expect(err.message).toContain(`https://127.0.0.1:${b}: connect ECONNREFUSED 127.0.0.1:${b}`);
  });
});
