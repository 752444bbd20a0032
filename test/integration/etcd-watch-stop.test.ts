/**
 * Stopping watches must never wait on etcd forever. etcd3 sends a cancel for a watch id and waits
 * for etcd's answer; a second cancel of the same watch, while another watch keeps the stream open,
 * gets no answer at all (measured: it hangs). lab-server stops its watch caches on shutdown, and a
 * test (or a signal handler) may stop it twice: each stop must return within seconds.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { EtcdStore } from "../../controlplane/storage/etcd-store.ts";
import { WatchCache } from "../../controlplane/storage/watch-cache.ts";
import { startEtcd, type TestEtcd } from "../helpers/etcd.ts";

let etcd: TestEtcd;
let store: EtcdStore;

beforeAll(async () => {
  etcd = await startEtcd();
  store = new EtcdStore({ hosts: etcd.endpoint });
}, 30_000);

afterAll(async () => {
  await store?.close();
  await etcd?.stop();
});

/** Milliseconds `p` took; fails the test after `ms`. */
async function within(what: string, p: Promise<unknown>, ms: number): Promise<number> {
  const t0 = Date.now();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    p,
    new Promise(
      (_, reject) =>
        (timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${ms} ms`)), ms)),
    ),
  ]).finally(() => clearTimeout(timer));
  return Date.now() - t0;
}

it("a watch stopped twice returns both times while another watch keeps the stream open", async () => {
  const rev = await store.revision();
  const keep = await store.watch(
    "/other/",
    rev,
    () => undefined,
    () => undefined,
  );
  const stop = await store.watch(
    "/mine/",
    rev,
    () => undefined,
    () => undefined,
  );
  expect(await within("first stop", stop(), 5_000)).toBeLessThan(2_000);
  await within("second stop", stop(), 5_000);
  await within("the other watch's stop", keep(), 5_000);
});

it("a watch cache closed twice returns both times", async () => {
  const cache = new WatchCache<unknown>(store, "/cache/");
  const unsubscribe = await cache.subscribe(
    "/cache/",
    await store.revision(),
    () => undefined,
    () => undefined,
  );
  const keep = await store.watch(
    "/other/",
    await store.revision(),
    () => undefined,
    () => undefined,
  );
  await unsubscribe();
  await within("first close", cache.close(), 5_000);
  await within("second close", cache.close(), 5_000);
  await keep();
});
