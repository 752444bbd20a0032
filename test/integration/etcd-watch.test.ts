/**
 * lab-server's own etcd watch client (controlplane/storage/etcd-watch.ts) on a real three-member
 * etcd with client TLS: resume without a gap when the member under the stream dies, compaction as
 * 410, progress notifications, 1,000 watches created and cancelled while a member restarts; and,
 * against a gRPC server that answers for a watch id nobody created (what etcd3's WatchManager threw
 * on from inside a gRPC `data` handler, ending lab-server), that such an answer is ignored.
 */
import { readFile } from "node:fs/promises";
import * as grpc from "@grpc/grpc-js";
import protobuf from "protobufjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EtcdStore, StoreError, type StoreEvent } from "../../controlplane/storage/etcd-store.ts";
import { ETCD_WATCH_PROTO } from "../../controlplane/storage/etcd-watch-proto.ts";
import { EtcdWatchCompactedError, prefixEnd } from "../../controlplane/storage/etcd-watch.ts";
import { RESOURCES } from "../../api/resources.ts";
import { Registry } from "../../controlplane/registry.ts";
import { ServiceIpAllocator } from "../../controlplane/service-ips.ts";
import { EtcdCluster } from "../helpers/etcd-cluster.ts";
import { startEtcd, type TestEtcd } from "../helpers/etcd.ts";
import { makeTestPki, type TestPki } from "../helpers/test-pki.ts";

const uncaught: unknown[] = [];
const onUncaught = (err: unknown): void => void uncaught.push(err);

async function until(what: string, f: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`still waiting after ${ms} ms for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(() => void process.on("uncaughtException", onUncaught));
afterAll(() => void process.off("uncaughtException", onUncaught));

describe("an answer for a watch id the client does not know", () => {
  let server: grpc.Server;
  let port = 0;

  beforeAll(async () => {
    const root = protobuf.parse(ETCD_WATCH_PROTO, { keepCase: true }).root;
    const Req = root.lookupType("etcdserverpb.WatchRequest");
    const Res = root.lookupType("etcdserverpb.WatchResponse");
    server = new grpc.Server();
    server.addService(
      {
        Watch: {
          path: "/etcdserverpb.Watch/Watch",
          requestStream: true,
          responseStream: true,
          requestSerialize: (m: object) => Buffer.from(Req.encode(Req.fromObject(m)).finish()),
          requestDeserialize: (b: Buffer) => Req.toObject(Req.decode(b), { longs: Number }),
          responseSerialize: (m: object) => Buffer.from(Res.encode(Res.fromObject(m)).finish()),
          responseDeserialize: (b: Buffer) => Res.toObject(Res.decode(b), { longs: Number }),
        },
      },
      {
        Watch: (call: grpc.ServerDuplexStream<Record<string, { watch_id?: number }>, object>) => {
          call.on("error", () => undefined);
          call.on("data", (req) => {
            const create = req["create_request"];
            if (!create) return;
            // etcd3 sends no watch id (etcd picks one); lab's client picks its own
            const id = Number(create.watch_id ?? 0) || 7;
            const kv = (key: string, rev: number) => ({
              key: Buffer.from(key),
              value: Buffer.from(JSON.stringify({ key })),
              mod_revision: rev,
              create_revision: rev,
              version: 1,
            });
            call.write({ header: { revision: 10 }, watch_id: id, created: true });
            // an answer for a watch nobody on this stream created, then the real one's event
            call.write({
              header: { revision: 11 },
              watch_id: id + 1000,
              events: [{ type: 0, kv: kv("/k/ghost", 11) }],
            });
            call.write({ header: { revision: 11 }, watch_id: id + 1000, canceled: true });
            call.write({ header: { revision: 12 }, watch_id: id, events: [{ type: 0, kv: kv("/k/a", 12) }] });
          });
        },
      },
    );
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
  });

  afterAll(() => server?.forceShutdown());

  it("is ignored: the process lives on and the watch gets its own events", async () => {
    const store = new EtcdStore({ hosts: `http://127.0.0.1:${port}` }, { log: () => undefined });
    const seen: string[] = [];
    const stop = await store.watch(
      "/k/",
      0,
      (ev) => seen.push(ev.key),
      () => undefined,
    );
    await until("the event of the real watch", () => seen.length > 0, 5_000);
    // give a late throw (etcd3 threw from the stream's data handler) the time to surface
    await new Promise((r) => setTimeout(r, 300));
    expect(uncaught).toEqual([]);
    expect(seen).toEqual(["/k/a"]);
    await stop();
    await store.close();
  });
});

describe("on a real three-member etcd with client TLS", () => {
  let pki: TestPki;
  let cluster: EtcdCluster;
  let store: EtcdStore;
  const logs: string[] = [];

  beforeAll(async () => {
    pki = await makeTestPki();
    cluster = await EtcdCluster.start({ pki, progressNotifyInterval: "1s" });
    const client = cluster.clientCert;
    store = new EtcdStore(
      {
        hosts: cluster.urls,
        credentials: {
          rootCertificate: await readFile(pki.caCert),
          certChain: await readFile(client.cert),
          privateKey: await readFile(client.key),
        },
      },
      { log: (l) => logs.push(l), watchBackoff: { initialMs: 50, maxMs: 1_000 } },
    );
  }, 60_000);

  afterAll(async () => {
    await store?.close();
    await cluster?.destroy();
    await pki?.cleanup();
  });

  const memberOfStream = (): number =>
    cluster.members.findIndex((m) => `127.0.0.1:${m.clientPort}` === store.watcher.currentMember);

  it("resumes after the member under its stream is killed: every write once, in order, no gap", async () => {
    const seen: number[] = [];
    const errors: Error[] = [];
    const start = await store.revision();
    const stop = await store.watch<{ i: number }>(
      "/resume/",
      start,
      (ev) => seen.push(ev.modRevision),
      (err) => errors.push(err),
    );
    const acked: number[] = [];
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        const rev = await store.create(`/resume/k${i}`, { i }).catch(() => undefined);
        if (rev) acked.push(rev);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await until("first events", () => seen.length >= 5, 10_000);
    const opened = store.watcher.streamsOpened;
    const victim = memberOfStream();
    expect(victim).toBeGreaterThanOrEqual(0);
    await cluster.kill(victim);
    await until("a new watch stream", () => store.watcher.streamsOpened > opened, 10_000);
    await new Promise((r) => setTimeout(r, 500));
    cluster.restart(victim);
    await cluster.waitHealthy(20_000);
    const before = acked.length;
    await until("writes after the restart", () => acked.length >= before + 10, 20_000);
    writing = false;
    await writer;
    const last = acked[acked.length - 1]!;
    await until("the last acknowledged write on the watch", () => seen.includes(last), 10_000);
    await stop();
    expect(errors).toEqual([]);
    // only this test writes under /resume/: the watch saw exactly the writes etcd committed
    const committed = (await store.list("/resume/")).items.map((i) => i.modRevision).sort((a, b) => a - b);
    expect(seen).toEqual(committed);
    for (const rev of acked) expect(seen).toContain(rev);
  }, 60_000);

  it("a watch from a compacted revision ends with 410 (Compacted), also when the stream finds out", async () => {
    for (let i = 0; i < 5; i++) await store.create(`/compact/k${i}`, { i });
    const rev = await store.revision();
    await store.compact(rev);
    await expect(
      store.watch(
        "/compact/",
        1,
        () => undefined,
        () => undefined,
      ),
    ).rejects.toSatisfy((err: unknown) => err instanceof StoreError && err.reason === "Compacted");
    // straight on the stream: etcd answers compact_revision, the client ends the watch with it
    const got: Error[] = [];
    const events: unknown[] = [];
    store.watcher.watch(
      { key: "/compact/", rangeEnd: prefixEnd("/compact/"), startRevision: 2 },
      { onEvents: (e) => events.push(...e), onError: (err) => got.push(err) },
    );
    await until("the compaction error", () => got.length > 0, 10_000);
    expect(events).toEqual([]);
    expect(got[0]).toBeInstanceOf(EtcdWatchCompactedError);
    expect((got[0] as EtcdWatchCompactedError).compactRevision).toBe(rev);
  }, 30_000);

  it("progress notifications report the revision an idle watch is complete up to", async () => {
    const progress: number[] = [];
    const stop = await store.watch(
      "/idle/",
      await store.revision(),
      () => undefined,
      () => undefined,
      (r) => progress.push(r),
    );
    const busy = await store.create(`/busy/${Date.now()}`, { x: 1 });
    await until(
      "a progress notification past the other write",
      () => progress.some((r) => r >= busy),
      10_000,
    );
    await stop();
  }, 20_000);

  it("an API watch's BOOKMARK resourceVersion follows etcd's progress while its resource is idle", async () => {
    const registry = new Registry(store, new ServiceIpAllocator(store, "10.96.0.0/12"));
    const info = RESOURCES.find((r) => r.kind === "ConfigMap")!;
    const from = await store.revision();
    const handle = await registry.watch(
      info,
      "idle-ns",
      { labels: [], fields: [] },
      String(from),
      () => undefined,
      () => undefined,
    );
    expect(handle.lastRevision()).toBe(from);
    // writes elsewhere move etcd's revision; the watched configmaps stay as they are
    const other = await store.create(`/elsewhere/${Date.now()}`, { x: 1 });
    await until("the bookmark revision past the other write", () => handle.lastRevision() >= other, 10_000);
    await handle.stop();
    await registry.close();
  }, 20_000);

  it("1,000 watches created and cancelled while the member under the stream restarts", async () => {
    const rev = await store.revision();
    const stops: (() => Promise<void>)[] = [];
    const errors: Error[] = [];
    for (let i = 0; i < 1000; i++)
      stops.push(
        await store.watch(
          `/many/${i}/`,
          rev,
          () => undefined,
          (e) => errors.push(e),
        ),
      );
    const victim = memberOfStream();
    const killed = cluster.kill(victim);
    // cancel while the stream dies, reconnects and re-creates the rest
    for (let i = 0; i < 1000; i++) {
      await stops[(i * 7919) % 1000]!();
      if (i % 50 === 0) await new Promise((r) => setTimeout(r, 10));
      if (i === 500) {
        await killed;
        cluster.restart(victim);
      }
    }
    await cluster.waitHealthy(20_000);
    expect(store.watcher.activeWatches).toBe(0);
    expect(errors).toEqual([]);
    // the client still works: a new watch gets its event
    const seen: StoreEvent<unknown>[] = [];
    const stop = await store.watch(
      "/after/",
      await store.revision(),
      (ev) => seen.push(ev),
      () => undefined,
    );
    await store.create("/after/x", { x: 1 });
    await until("an event on a fresh watch", () => seen.length === 1, 10_000);
    await stop();
    expect(uncaught).toEqual([]);
  }, 60_000);
});

describe("a request over etcd's size limit", () => {
  let etcd: TestEtcd;
  beforeAll(async () => void (etcd = await startEtcd()), 30_000);
  afterAll(async () => await etcd?.stop());

  it("fails for its caller only: the next requests of everyone else succeed at once", async () => {
    const store = new EtcdStore({ hosts: etcd.endpoint }, { log: () => undefined });
    // 3 MiB: beyond gRPC's limit on etcd (--max-request-bytes 1.5 MiB + 512 KiB)
    const big = await store.create("/big/a", { data: "x".repeat(3 * 1024 * 1024) }).then(
      () => new Error("a 3 MiB write was accepted"),
      (err: Error) => err,
    );
    // etcd3 used to retry it 3 times on this one member and open its circuit for 5 s
    const t0 = Date.now();
    for (let i = 0; i < 5; i++) await store.create(`/big/small-${i}`, { i });
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(big.message).toMatch(/request is too large/);
    await store.close();
  }, 30_000);
});
