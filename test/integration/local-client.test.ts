import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { V1Pod } from "@kubernetes/client-node";
import { LabClient } from "../../api/client.ts";
import type { WatchEvent } from "../../api/informer.ts";
import { certificateUser, localLoopClient, type LoopClient } from "../../controlplane/local-client.ts";
import { errorCode } from "../../controlplane/loop-client.ts";
import { startTestApiServer, type TestApiServer } from "../helpers/test-apiserver.ts";
import { readFile } from "node:fs/promises";

/**
 * The control loops' in-process client (controlplane/local-client.ts) against a real etcd and
 * lab-server: what a loop sees must be what it would see over HTTPS.
 */

let api: TestApiServer;
let http: LabClient;
let loops: LoopClient;
let stranger: LoopClient;

beforeAll(async () => {
  api = await startTestApiServer();
  http = await LabClient.fromKubeconfig(api.kubeconfig);
  const cm = await api.pki.client("cm", "system:kube-controller-manager", []);
  loops = localLoopClient(api.server.local, certificateUser(await readFile(cm.cert)));
  stranger = localLoopClient(api.server.local, { name: "someone", groups: ["system:authenticated"] });
});

afterAll(async () => {
  http?.close();
  await api?.stop();
});

/** The next event of a watch, or a failure naming what did not come. */
async function next<T>(it: AsyncIterator<WatchEvent<T>>, what: string): Promise<WatchEvent<T>> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no watch event within 10 s: ${what}`)), 10_000);
  });
  try {
    const r = await Promise.race([it.next(), timeout]);
    if (r.done) throw new Error(`the watch ended before ${what}`);
    return r.value;
  } finally {
    clearTimeout(timer);
  }
}

describe("in-process loop client", () => {
  it("authenticates as its certificate's user: CN the name, O the groups", async () => {
    const pair = await api.pki.client("lcm", "system:lab-controller-manager", ["system:masters"]);
    expect(certificateUser(await readFile(pair.cert))).toEqual({
      name: "system:lab-controller-manager",
      groups: ["system:masters", "system:authenticated"],
    });
  });

  it("authorizes every call as that user: a user without rights gets the server's 403", async () => {
    const err = await stranger.writer
      .create("events", "default", { metadata: { name: "x", namespace: "default" } })
      .catch((e: unknown) => e);
    expect(errorCode(err)).toBe(403);
    expect((err as Error).message).toBe(
      'events is forbidden: User "someone" cannot create resource "events" in API group "" in the namespace "default"',
    );
  });

  it("validates like a request: an invalid pod is the kind's 422", async () => {
    const bad = await loops.writer
      .create<V1Pod>("pods", "default", {
        metadata: { name: "Not_A_Name", namespace: "default" },
        spec: { containers: [{ name: "c", image: "lab/sample:latest" }] },
      })
      .catch((e: unknown) => e);
    expect(errorCode(bad)).toBe(422);
    expect((bad as Error).message).toContain('Pod "Not_A_Name" is invalid: metadata.name');
  });

  it("creates, updates with 409 on a stale resourceVersion, and binds as over HTTPS", async () => {
    const pod = await loops.writer.create<V1Pod>("pods", "default", {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "p1", namespace: "default", labels: undefined },
      spec: { containers: [{ name: "c", image: "lab/sample:latest" }] },
    });
    expect(pod.metadata?.uid).toBeTruthy();
    expect(Object.keys(pod.metadata ?? {})).not.toContain("labels");
    const viaHttp = await http.get("pods", "p1", "default");
    expect(viaHttp.metadata?.resourceVersion).toBe(pod.metadata?.resourceVersion);
    const updated = await loops.writer.update<V1Pod>("pods", "default", {
      ...pod,
      metadata: { ...pod.metadata, labels: { a: "b" } },
    });
    expect(updated.metadata?.labels).toEqual({ a: "b" });
    const stale = await loops.writer
      .update<V1Pod>("pods", "default", { ...pod, metadata: { ...pod.metadata, labels: { c: "d" } } })
      .catch((e: unknown) => e);
    expect(errorCode(stale)).toBe(409);
    await loops.writer.bind("default", "p1", "node-1");
    expect((await http.get("pods", "p1", "default")).spec?.nodeName).toBe("node-1");
    const again = await loops.writer.bind("default", "p1", "node-2").catch((e: unknown) => e);
    expect(errorCode(again)).toBe(409);
    expect(await loops.writer.get("pods", "default", "missing")).toBeUndefined();
  });

  it("lists and watches; each watcher gets its own copy of an event", async () => {
    const a = loops.lw<V1Pod>("pods", "default");
    const b = loops.lw<V1Pod>("pods", "default");
    const listed = await a.list();
    const stop = new AbortController();
    const wa = a.watch(listed.resourceVersion, stop.signal)[Symbol.asyncIterator]();
    const wb = b.watch(listed.resourceVersion, stop.signal)[Symbol.asyncIterator]();
    try {
      await http.create("pods", {
        metadata: { name: "p2", namespace: "default" },
        spec: { containers: [{ name: "c", image: "lab/sample:latest" }] },
      });
      const ea = await next(wa, "ADDED p2 (watcher a)");
      expect(ea.type).toBe("ADDED");
      expect(ea.object.metadata?.name).toBe("p2");
      ea.object.metadata!.labels = { changed: "by a" };
      const eb = await next(wb, "ADDED p2 (watcher b)");
      expect(eb.object.metadata?.labels).toBeUndefined();
      await http.delete("pods", "p2", "default", { gracePeriodSeconds: 0 });
      const deleted = await next(wa, "DELETED p2");
      expect(deleted.type).toBe("DELETED");
    } finally {
      stop.abort();
      await wa.return?.(undefined);
      await wb.return?.(undefined);
    }
  });

  it("a watch from a resourceVersion older than the cache's window is a 410 ERROR event", async () => {
    const w = loops.lw<V1Pod>("pods", "default").watch("1")[Symbol.asyncIterator]();
    const ev = await next(w, "the 410 ERROR");
    expect(ev.type).toBe("ERROR");
    expect((ev.object as unknown as { code: number }).code).toBe(410);
    expect((await w.next()).done).toBe(true);
  });
});
