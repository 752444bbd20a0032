import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RESOURCES, type ResourceInfo } from "../../api/resources.ts";
import { ApiError } from "../../api/status.ts";
import { Registry, type KObject } from "../../controlplane/registry.ts";
import { ServiceIpAllocator } from "../../controlplane/service-ips.ts";
import { EtcdStore } from "../../controlplane/storage/etcd-store.ts";
import { startEtcd, type TestEtcd } from "../helpers/etcd.ts";

/** The generic store and its strategies on a real etcd: guaranteedUpdate, binding, deletion, allocations. */

let etcd: TestEtcd;
let store: EtcdStore;
let registry: Registry;
const kind = (k: string): ResourceInfo => RESOURCES.find((r) => r.kind === k)!;
const CM = kind("ConfigMap");
const POD = kind("Pod");
const SVC = kind("Service");

/** Makes the next `times` compare-and-swaps of `key` lose to a write of `change` landing first. */
function raceNextUpdates(key: string, times: number, change: (o: KObject) => void): { raced: () => number } {
  const original = store.update.bind(store);
  let raced = 0;
  store.update = async <T>(k: string, value: T, rev: number): Promise<number> => {
    if (k === key && raced < times) {
      raced++;
      const cur = (await store.get<KObject>(k))!;
      change(cur.value);
      await original(k, cur.value, cur.modRevision);
    }
    return original(k, value, rev);
  };
  return { raced: () => raced };
}

beforeAll(async () => {
  etcd = await startEtcd();
  store = new EtcdStore({ hosts: etcd.endpoint });
  registry = new Registry(store, new ServiceIpAllocator(store, "10.96.0.0/24"));
  await registry.ensureDefaults("127.0.0.1", 6443);
});

afterAll(async () => {
  await registry?.close();
  await store?.close();
  await etcd?.stop();
});

describe("guaranteedUpdate", () => {
  const update = EtcdStore.prototype.update;
  afterAll(() => {
    store.update = update;
  });

  it("re-reads and re-applies the mutation when another write lands in between", async () => {
    await registry.create(CM, "default", { metadata: { name: "gu" }, data: { a: "1" } });
    const race = raceNextUpdates("/registry/configmaps/default/gu", 2, (o) => {
      (o.data as Record<string, string>).other = "theirs";
    });
    let calls = 0;
    const out = await registry.guaranteedUpdate(CM, "default", "gu", (cm) => {
      calls++;
      (cm.data as Record<string, string>).a = "2";
      return cm;
    });
    store.update = update;
    expect(race.raced()).toBe(2);
    expect(calls).toBe(3);
    expect(out.data).toEqual({ a: "2", other: "theirs" });
    expect((await registry.get(CM, "default", "gu")).data).toEqual({ a: "2", other: "theirs" });
  });

  it("gives up after `attempts` lost compare-and-swaps with a Conflict", async () => {
    raceNextUpdates("/registry/configmaps/default/gu", 100, (o) => {
      (o.data as Record<string, string>).n = String(Math.random());
    });
    let calls = 0;
    const err = await registry
      .guaranteedUpdate(
        CM,
        "default",
        "gu",
        (cm) => {
          calls++;
          (cm.data as Record<string, string>).a = "3";
          return cm;
        },
        { attempts: 3 },
      )
      .catch((e: unknown) => e);
    store.update = update;
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).reason).toBe("Conflict");
    expect(calls).toBe(3);
  });

  it("treats a resourceVersion left in the object as the caller's precondition, and skips no-op writes", async () => {
    const cur = await registry.get(CM, "default", "gu");
    let calls = 0;
    const stale = await registry
      .guaranteedUpdate(CM, "default", "gu", (cm) => {
        calls++;
        cm.metadata.resourceVersion = "1";
        return cm;
      })
      .catch((e: unknown) => e);
    expect((stale as ApiError).code).toBe(409);
    expect(calls).toBe(1);
    const same = await registry.guaranteedUpdate(CM, "default", "gu", (cm) => cm);
    expect(same.metadata.resourceVersion).toBe(cur.metadata.resourceVersion);
  });

  it("validates what the mutation made (422), and writes nothing", async () => {
    const err = await registry
      .guaranteedUpdate(CM, "default", "gu", (cm) => {
        cm.metadata.annotations = { n: 1 as unknown as string };
        return cm;
      })
      .catch((e: unknown) => e);
    expect((err as ApiError).code).toBe(422);
    expect((await registry.get(CM, "default", "gu")).metadata.annotations).toBeUndefined();
  });
});

describe("pod strategy", () => {
  const pod = (name: string): KObject => ({
    metadata: { name },
    spec: { containers: [{ name: "c", image: "busybox:1" }] },
  });

  it("binds once through the binding path, and a plain update may not move the pod", async () => {
    await registry.create(POD, "default", pod("b1"));
    const bound = await registry.bind("default", "b1", "worker-1");
    expect(bound.spec).toMatchObject({ nodeName: "worker-1" });
    expect((bound.status as { conditions: unknown[] }).conditions).toContainEqual(
      expect.objectContaining({ type: "PodScheduled", status: "True" }),
    );
    await expect(registry.bind("default", "b1", "worker-2")).rejects.toMatchObject({ code: 409 });
    const cur = await registry.get(POD, "default", "b1");
    const moved = structuredClone(cur);
    (moved.spec as Record<string, unknown>).nodeName = "worker-2";
    await expect(registry.update(POD, cur, moved, "main")).rejects.toMatchObject({ code: 422 });
    const image = structuredClone(cur);
    (image.spec as { containers: { image: string }[] }).containers[0]!.image = "busybox:2";
    expect((await registry.update(POD, cur, image, "main")).spec).toMatchObject({ nodeName: "worker-1" });
    await registry.create(POD, "default", pod("b2"));
    await expect(registry.bind("default", "b2", "not a node")).rejects.toMatchObject({ code: 422 });
  });

  it("deletes a bound pod gracefully and an unbound one at once, retrying a raced write", async () => {
    const race = raceNextUpdates("/registry/pods/default/b1", 1, (o) => {
      o.metadata.labels = { raced: "yes" };
    });
    const terminating = await registry.delete(POD, "default", "b1", { gracePeriodSeconds: 30 });
    store.update = EtcdStore.prototype.update;
    expect(race.raced()).toBe(1);
    expect(terminating.metadata).toMatchObject({ deletionGracePeriodSeconds: 30, labels: { raced: "yes" } });
    await registry.delete(POD, "default", "b2", {});
    await expect(registry.get(POD, "default", "b2")).rejects.toMatchObject({ code: 404 });
  });
});

describe("service strategy", () => {
  const claimed = async (): Promise<number> =>
    (await store.list<unknown>("/registry/ranges/serviceips/")).items.length;

  it("gives back the cluster IP and node port of a create that fails, and of a deleted Service", async () => {
    const svc = (): KObject => ({
      metadata: { name: "np" },
      spec: { type: "NodePort", ports: [{ port: 80 }] },
    });
    const before = await claimed();
    const created = await registry.create(SVC, "default", svc());
    expect(await claimed()).toBe(before + 1);
    expect((created.spec as { ports: { nodePort: number }[] }).ports[0]!.nodePort).toBeGreaterThanOrEqual(
      30000,
    );
    await expect(registry.create(SVC, "default", svc())).rejects.toMatchObject({ code: 409 });
    expect(await claimed()).toBe(before + 1);
    await registry.delete(SVC, "default", "np", {});
    expect(await claimed()).toBe(before);
  });
});
