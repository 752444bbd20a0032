import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { V1ConfigMap } from "@kubernetes/client-node";
import { ApiStatusError, LabClient } from "../../api/client.ts";
import { RESOURCES, type ResourceInfo } from "../../api/resources.ts";
import type { KObject, Registry } from "../../controlplane/registry.ts";
import { EtcdStore } from "../../controlplane/storage/etcd-store.ts";
import type { Versioned } from "../../controlplane/storage/etcd-store.ts";
import { startTestApiServer, type TestApiServer } from "../helpers/test-apiserver.ts";

/**
 * Updates start from the watch cache's newest copy (Registry.getForUpdate) instead of an etcd read.
 * That copy may be behind etcd: these tests hold it at an older version on purpose and check that
 * clients never see the difference (no lost write, no spurious 409, no stale answer).
 */

let api: TestApiServer;
let other: EtcdStore; // another apiserver's writes, straight to etcd
let client: LabClient;
let registry: Registry;
const kind = (k: string): ResourceInfo => RESOURCES.find((r) => r.kind === k)!;
const CM = kind("ConfigMap");
const POD = kind("Pod");

beforeAll(async () => {
  api = await startTestApiServer();
  other = new EtcdStore({ hosts: api.etcd.endpoint });
  client = await LabClient.fromKubeconfig(api.kubeconfig);
  registry = api.server.registry;
  // the watch caches run from the first list, as for any informer
  await registry.list(CM, "default", { labels: [], fields: [] });
  await registry.list(POD, "default", { labels: [], fields: [] });
});

afterAll(async () => {
  client?.close();
  await other?.close();
  await api?.stop();
});

/** Until undone, the watch cache answers `key` with `stale` (as if its watch were behind). */
function holdCache(info: ResourceInfo, key: string, stale: Versioned<KObject>): () => void {
  const caches = (registry as unknown as { caches: Map<string, { recent: (k: string) => unknown }> }).caches;
  const cache = caches.get(info.plural)!;
  const recent = cache.recent.bind(cache);
  cache.recent = (k: string) => (k === key ? stale : recent(k));
  return () => {
    cache.recent = recent;
  };
}

/** The key's value as etcd has it now (a private copy). */
async function stored(key: string): Promise<Versioned<KObject>> {
  return (await other.get<KObject>(key))!;
}

async function until(what: string, f: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("updates from the watch cache's copy", () => {
  it("is used when fresh: the cache holds the newest version after the watch brings it", async () => {
    const created = await client.create("configmaps", {
      metadata: { name: "fresh", namespace: "default" },
      data: { a: "1" },
    });
    const caches = (registry as unknown as { caches: Map<string, { recent: (k: string) => unknown }> })
      .caches;
    await until("the watch cache to hold the ConfigMap", () => {
      const hit = caches.get("configmaps")!.recent("/registry/configmaps/default/fresh") as
        Versioned<KObject> | undefined;
      return String(hit?.modRevision) === created.metadata?.resourceVersion;
    });
    const copy = await registry.getForUpdate(CM, "default", "fresh");
    expect(registry.servedFromCache(copy)).toBe(true);
    expect(copy.metadata.resourceVersion).toBe(created.metadata?.resourceVersion);
    copy.data = { changed: "by the caller" }; // a private copy: the cache keeps its own
    const again = await registry.getForUpdate(CM, "default", "fresh");
    expect(again.data).toEqual({ a: "1" });
  });

  it("a stale copy loses no write: the mutation is applied again to etcd's version", async () => {
    await client.create("configmaps", { metadata: { name: "lost", namespace: "default" }, data: { a: "1" } });
    const key = "/registry/configmaps/default/lost";
    const old = await stored(key);
    // another apiserver writes b=2; this one's cache still shows the version before
    const next = structuredClone(old.value);
    next.data = { a: "1", b: "2" };
    await other.update(key, next, old.modRevision);
    const release = holdCache(CM, key, old);
    try {
      let calls = 0;
      const out = await registry.guaranteedUpdate(CM, "default", "lost", (cm) => {
        calls++;
        cm.data = { ...(cm.data as Record<string, string>), c: "3" };
        return cm;
      });
      expect(out.data).toEqual({ a: "1", b: "2", c: "3" });
      expect(calls).toBe(2); // once on the stale copy (lost the compare-and-swap), once on etcd's
      expect((await stored(key)).value.data).toEqual({ a: "1", b: "2", c: "3" });
    } finally {
      release();
    }
  });

  it("a no-op on a stale copy answers etcd's version, not the cache's", async () => {
    await client.create("configmaps", { metadata: { name: "noop", namespace: "default" }, data: { a: "1" } });
    const key = "/registry/configmaps/default/noop";
    const old = await stored(key);
    const next = structuredClone(old.value);
    next.data = { a: "2" };
    const rev = await other.update(key, next, old.modRevision);
    const release = holdCache(CM, key, old);
    try {
      const out = await registry.guaranteedUpdate(CM, "default", "noop", (cm) => cm);
      expect(out.metadata.resourceVersion).toBe(String(rev));
      expect(out.data).toEqual({ a: "2" });
    } finally {
      release();
    }
  });

  it("PUT with the resourceVersion the last write returned succeeds though the cache is behind; an older one is 409", async () => {
    const cm = await client.create("configmaps", {
      metadata: { name: "precondition", namespace: "default" },
      data: { n: "0" },
    });
    const key = "/registry/configmaps/default/precondition";
    const before = await stored(key);
    const v1 = await client.update("configmaps", { ...cm, data: { n: "1" } });
    const release = holdCache(CM, key, before);
    try {
      // the client holds v1 (newer than the cache's copy): its precondition is met in etcd
      const v2 = await client.update("configmaps", { ...v1, data: { n: "2" } } as V1ConfigMap);
      expect(v2.data).toEqual({ n: "2" });
      expect(Number(v2.metadata?.resourceVersion)).toBeGreaterThan(Number(v1.metadata?.resourceVersion));
      // a client holding v1 now is behind etcd: Conflict, as always
      const err = await client.update("configmaps", { ...v1, data: { n: "3" } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ApiStatusError);
      expect((err as ApiStatusError).code).toBe(409);
      expect((await stored(key)).value.data).toEqual({ n: "2" });
    } finally {
      release();
    }
  });

  it("a merge patch on a stale copy keeps the other apiserver's change", async () => {
    await client.create("configmaps", {
      metadata: { name: "patch", namespace: "default" },
      data: { a: "1" },
    });
    const key = "/registry/configmaps/default/patch";
    const old = await stored(key);
    const next = structuredClone(old.value);
    next.data = { a: "1", theirs: "yes" };
    await other.update(key, next, old.modRevision);
    const release = holdCache(CM, key, old);
    try {
      const out = await client.patch(
        "configmaps",
        "patch",
        { data: { mine: "yes" } },
        { namespace: "default" },
      );
      expect(out.data).toEqual({ a: "1", theirs: "yes", mine: "yes" });
    } finally {
      release();
    }
  });

  it("binding a pod the cache still shows unbound answers 409 already assigned, from etcd's version", async () => {
    await client.create("pods", {
      metadata: { name: "bound", namespace: "default" },
      spec: { containers: [{ name: "c", image: "lab/sample:latest" }] },
    });
    const key = "/registry/pods/default/bound";
    const old = await stored(key);
    await client.bind("default", "bound", "node-a");
    const release = holdCache(POD, key, old);
    try {
      const err = await client.bind("default", "bound", "node-b").catch((e: unknown) => e);
      expect((err as ApiStatusError).code).toBe(409);
      expect((err as ApiStatusError).message).toContain('is already assigned to node "node-a"');
      expect((await stored(key)).value.spec).toMatchObject({ nodeName: "node-a" });
    } finally {
      release();
    }
  });

  it("deleting through a stale copy deletes what etcd holds (a uid precondition is checked against etcd's)", async () => {
    await client.create("configmaps", { metadata: { name: "gone", namespace: "default" }, data: { a: "1" } });
    const key = "/registry/configmaps/default/gone";
    const old = await stored(key);
    const next = structuredClone(old.value);
    next.data = { a: "2" };
    await other.update(key, next, old.modRevision);
    const release = holdCache(CM, key, old);
    try {
      await client.delete("configmaps", "gone", "default", {
        preconditions: { uid: old.value.metadata.uid! },
      });
      expect(await other.get(key)).toBeUndefined();
    } finally {
      release();
    }
  });
});
