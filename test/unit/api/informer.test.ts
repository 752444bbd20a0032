import type { V1ConfigMap } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import {
  addOrUpdateObject,
  deleteObject,
  Informer,
  objectKey,
  replaceAll,
  splitKey,
} from "../../../api/informer.ts";
import { MemoryStore } from "../../helpers/memory-store.ts";
import { until } from "../../helpers/until.ts";

const cm = (name: string, data = "1", ns = "default"): V1ConfigMap => ({
  metadata: { name, namespace: ns },
  data: { v: data },
});

describe("cache functions", () => {
  it("keys namespaced and cluster objects", () => {
    expect(objectKey(cm("a"))).toBe("default/a");
    expect(objectKey({ metadata: { name: "node1" } })).toBe("node1");
    expect(splitKey("ns/a")).toEqual({ namespace: "ns", name: "a" });
    expect(splitKey("node1")).toEqual({ name: "node1" });
  });

  it("add, update, delete and replaceAll report what changed", () => {
    const c = new Map<string, V1ConfigMap>();
    expect(addOrUpdateObject(c, cm("a"))).toBeUndefined();
    expect(addOrUpdateObject(c, cm("a", "2"))?.data?.v).toBe("1");
    expect(deleteObject(c, cm("a"))?.data?.v).toBe("2");
    expect(c.size).toBe(0);
    c.set("default/a", { ...cm("a"), metadata: { ...cm("a").metadata, resourceVersion: "1" } });
    c.set("default/b", cm("b"));
    const d = replaceAll(c, [
      { ...cm("a", "3"), metadata: { ...cm("a").metadata, resourceVersion: "5" } },
      cm("c"),
    ]);
    expect(d.added.map(objectKey)).toEqual(["default/c"]);
    expect(d.updated.map((u) => u.obj.data?.v)).toEqual(["3"]);
    expect(d.deleted.map(objectKey)).toEqual(["default/b"]);
    expect([...c.keys()].sort()).toEqual(["default/a", "default/c"]);
  });
});

describe("Informer", () => {
  it("lists, then watches from the list's version and delivers add/update/delete", async () => {
    const store = new MemoryStore<V1ConfigMap>();
    store.create(cm("a"));
    const lw = store.listWatcher();
    const inf = new Informer(lw);
    const seen: string[] = [];
    inf.on({
      add: (o) => seen.push(`add ${o.metadata?.name}`),
      update: (_o, n) => seen.push(`update ${n.metadata?.name} ${n.data?.v}`),
      delete: (o) => seen.push(`delete ${o.metadata?.name}`),
    });
    const ac = new AbortController();
    const run = inf.run(ac.signal);
    await inf.waitForSync();
    await until("lw.watches.length > 0", () => lw.watches.length > 0, 2000, { everyMs: 5 });
    expect(lw.watches[0]).toBe("1");
    const a = store.objects.get("default/a")!;
    store.update({ ...a, data: { v: "2" } });
    store.create(cm("b"));
    store.remove("default/a");
    await until("seen.length === 4", () => seen.length === 4, 2000, { everyMs: 5 });
    expect(seen).toEqual(["add a", "update a 2", "add b", "delete a"]);
    expect([...inf.cache.keys()]).toEqual(["default/b"]);
    ac.abort();
    await run;
  });

  it("advances its version on BOOKMARK and re-watches from the last version seen", async () => {
    const store = new MemoryStore<V1ConfigMap>();
    const lw = store.listWatcher();
    const inf = new Informer(lw);
    const ac = new AbortController();
    const run = inf.run(ac.signal);
    await inf.waitForSync();
    store.create(cm("a"));
    store.bookmark();
    await until('inf.lastResourceVersion === "2"', () => inf.lastResourceVersion === "2", 2000, {
      everyMs: 5,
    });
    expect(inf.cache.size).toBe(1);
    ac.abort();
    await run;
  });

  it("relists on 410 Gone, removing objects deleted while it was away", async () => {
    const store = new MemoryStore<V1ConfigMap>();
    store.create(cm("a"));
    store.create(cm("b"));
    const lw = store.listWatcher();
    const inf = new Informer(lw, { retryDelayMs: 5 });
    const deleted: string[] = [];
    inf.on({ delete: (o) => deleted.push(o.metadata!.name!) });
    const ac = new AbortController();
    const run = inf.run(ac.signal);
    await inf.waitForSync();
    // The server compacts away the deletion of b: the watch must relist to learn about it.
    store.remove("default/b");
    store.compact();
    store.create(cm("c"));
    await until(
      'lw.lists >= 2 && inf.cache.has("default/c")',
      () => lw.lists >= 2 && inf.cache.has("default/c"),
      2000,
      { everyMs: 5 },
    );
    await until('deleted.includes("b")', () => deleted.includes("b"), 2000, { everyMs: 5 });
    expect([...inf.cache.keys()].sort()).toEqual(["default/a", "default/c"]);
    ac.abort();
    await run;
  });

  it("keeps retrying when the list fails, reporting the error", async () => {
    const store = new MemoryStore<V1ConfigMap>();
    const real = store.listWatcher();
    let fails = 2;
    const errors: unknown[] = [];
    const inf = new Informer(
      {
        list: async () => {
          if (fails-- > 0) throw new Error("connection refused");
          return real.list();
        },
        watch: (rv, s) => real.watch(rv, s),
      },
      { retryDelayMs: 5, onError: (e) => errors.push(e) },
    );
    const ac = new AbortController();
    const run = inf.run(ac.signal);
    await inf.waitForSync();
    expect(errors).toHaveLength(2);
    ac.abort();
    await run;
  });

  it("keeps an index filed by value through adds, moves, deletes and a relist after 410", async () => {
    const store = new MemoryStore<V1ConfigMap>();
    store.create(cm("a", "x"));
    const lw = store.listWatcher();
    const inf = new Informer(lw, { retryDelayMs: 5 });
    inf.addIndex("v", (o) => (o.data?.v ? [o.data.v] : []));
    const names = (v: string): string[] =>
      inf
        .byIndex("v", v)
        .map((o) => o.metadata?.name ?? "")
        .sort();
    const ac = new AbortController();
    const run = inf.run(ac.signal);
    await inf.waitForSync();
    expect(names("x")).toEqual(["a"]);
    store.create(cm("b", "x"));
    store.update({ ...store.objects.get("default/a")!, data: { v: "y" } });
    await until('names("y") is [a]', () => names("y").join() === "a", 2000, { everyMs: 5 });
    expect(names("x")).toEqual(["b"]);
    store.remove("default/b");
    await until('names("x") is empty', () => names("x").length === 0, 2000, { everyMs: 5 });
    // Compacted away while changes happen: the relist rebuilds the index from the fresh list.
    store.compact();
    store.create(cm("c", "y"));
    await until('names("y") is [a, c]', () => names("y").join() === "a,c", 2000, { everyMs: 5 });
    expect(() => inf.byIndex("nope", "x")).toThrow(/no index "nope"/);
    ac.abort();
    await run;
  });
});
