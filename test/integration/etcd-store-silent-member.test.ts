/**
 * A powered-off etcd member does not close its connections: packets to it are simply lost. Here
 * two TCP proxies lead to one real etcd; "freezing" one drops everything in both directions and
 * holds new connections without an answer, as a dead host does. lab-server's store must still
 * answer every read and write through the other one, each within a couple of call deadlines,
 * instead of hanging until TCP gives up.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ETCD_CALL_TIMEOUT_MS, EtcdStore } from "../../controlplane/storage/etcd-store.ts";
import { startEtcd, type TestEtcd } from "../helpers/etcd.ts";

class SilenceableProxy {
  private frozen = false;
  private readonly sockets = new Set<Socket>();
  private server: Server | undefined;
  url = "";

  constructor(private readonly target: URL) {}

  async start(): Promise<void> {
    this.server = createServer((client) => {
      this.sockets.add(client);
      client.on("close", () => this.sockets.delete(client));
      client.on("error", () => undefined);
      if (this.frozen) return; // accepted, never answered
      const up = connect(Number(this.target.port), this.target.hostname);
      this.sockets.add(up);
      up.on("close", () => this.sockets.delete(up));
      up.on("error", () => client.destroy());
      client.on("data", (d: Buffer) => void (this.frozen || up.write(d)));
      up.on("data", (d: Buffer) => void (this.frozen || client.write(d)));
      client.on("end", () => this.frozen || up.end());
      up.on("end", () => this.frozen || client.end());
    });
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", r));
    const addr = this.server.address();
    this.url = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
  }

  /** From now on nothing passes and nothing is closed: a host that lost power. */
  silence(): void {
    this.frozen = true;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

let etcd: TestEtcd;
const proxies: SilenceableProxy[] = [];
let store: EtcdStore | undefined;

beforeAll(async () => {
  etcd = await startEtcd();
  for (let i = 0; i < 2; i++) {
    const p = new SilenceableProxy(new URL(etcd.endpoint));
    await p.start();
    proxies.push(p);
  }
});

afterAll(async () => {
  await store?.close();
  for (const p of proxies) await p.stop();
  await etcd?.stop();
});

it("a member gone silent: every read and write completes on the other member within two call deadlines", async () => {
  store = new EtcdStore({ hosts: proxies.map((p) => p.url) });
  // Calls go to a random member each: after 12 writes both connections are open and in use.
  for (let i = 0; i < 12; i++) await store.create(`/silent/k${i}`, { i });
  proxies[0]!.silence();
  const limit = 2 * ETCD_CALL_TIMEOUT_MS + 3_000;
  for (let i = 0; i < 6; i++) {
    const t0 = Date.now();
    const got = await store.get<{ i: number }>(`/silent/k${i}`);
    expect(got?.value).toEqual({ i });
    expect(Date.now() - t0, `read ${i}`).toBeLessThan(limit);
    const t1 = Date.now();
    await store.update(`/silent/k${i}`, { i, again: true }, got!.modRevision);
    expect(Date.now() - t1, `write ${i}`).toBeLessThan(limit);
  }
}, 120_000);
