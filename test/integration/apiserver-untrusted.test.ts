/**
 * lab-server against the findings of the untrusted-input review (issue 25) and the crash of issue
 * 17: each test is one probe as an attacker with a node's certificate, or a careless client, would
 * send it, against real etcd and a real lab-server on loopback. After each, the server still answers.
 */
import { execFileSync } from "node:child_process";
import { connect as netConnect } from "node:net";
import { request } from "node:https";
import { connect as tlsConnect } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compactionInterval } from "../../controlplane/main.ts";
import { compactRound, type CompactorState } from "../../controlplane/storage/compactor.ts";
import { EtcdStore } from "../../controlplane/storage/etcd-store.ts";
import { identity, rawRequest, type Identity, type RawResponse } from "../helpers/raw-https.ts";
import { startTestApiServer, type TestApiServer } from "../helpers/test-apiserver.ts";

let s: TestApiServer;
let adm: Identity;
let w1: Identity;

const call = (
  who: Identity,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<RawResponse> =>
  rawRequest(s.port, who, method, path, {
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    headers,
  });

const JSON_PATCH = { "Content-Type": "application/json-patch+json" };
const MERGE_PATCH = { "Content-Type": "application/merge-patch+json" };
const TABLE = { Accept: "application/json;as=Table;v=1;g=meta.k8s.io" };

/** The server still serves: public and etcd-backed reads both answer. */
async function expectAlive(): Promise<void> {
  expect((await call(adm, "GET", "/version")).code).toBe(200);
  expect((await call(adm, "GET", "/api/v1/namespaces/default/configmaps")).code).toBe(200);
}

/** Puts an object straight into etcd, past every check of lab-server (as if stored before them). */
async function storeRaw(key: string, obj: unknown): Promise<void> {
  await s.store.client.put(key).value(JSON.stringify(obj));
}

interface WatchStream {
  events: { type: string; object: Record<string, unknown> }[];
  code: Promise<number>;
  /** Resolves when the server ends the stream. */
  ended: Promise<void>;
  /** Resolves once an event matches; fails after timeoutMs naming what it waited for. */
  until(
    what: string,
    pred: (ev: { type: string; object: Record<string, unknown> }) => boolean,
    timeoutMs?: number,
  ): Promise<void>;
  close(): void;
}

function openWatch(who: Identity, path: string, headers: Record<string, string> = {}): WatchStream {
  const events: WatchStream["events"] = [];
  const waiters: (() => void)[] = [];
  let buf = "";
  let status: (code: number) => void = () => undefined;
  const code = new Promise<number>((r) => (status = r));
  let eof: () => void = () => undefined;
  const ended = new Promise<void>((r) => (eof = r));
  const req = request(
    {
      host: "127.0.0.1",
      port: s.port,
      path,
      method: "GET",
      ca: who.ca,
      cert: who.cert,
      key: who.key,
      agent: false,
      headers,
    },
    (res) => {
      status(res.statusCode ?? 0);
      res.on("data", (d: Buffer) => {
        buf += d.toString();
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.trim()) events.push(JSON.parse(line) as WatchStream["events"][number]);
        }
        for (const w of waiters) w();
      });
      res.on("error", () => undefined);
      res.on("end", () => eof());
    },
  );
  req.on("error", () => undefined);
  req.end();
  return {
    events,
    code,
    ended,
    until(what, pred, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (events.some(pred)) {
            clearTimeout(timer);
            resolve();
          }
        };
        const timer = setTimeout(
          () =>
            reject(
              new Error(
                `watch ${path}: no ${what} within ${timeoutMs} ms (got ${JSON.stringify(events).slice(0, 500)})`,
              ),
            ),
          timeoutMs,
        );
        waiters.push(check);
        check();
      });
    },
    close: () => req.destroy(),
  };
}

function pod(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    metadata: { name, namespace: "default" },
    spec: { containers: [{ name: "c", image: "busybox" }], ...extra },
  };
}

async function bindPod(name: string, node: string): Promise<void> {
  const r = await call(adm, "POST", `/api/v1/namespaces/default/pods/${name}/binding`, {
    apiVersion: "v1",
    kind: "Binding",
    metadata: { name },
    target: { apiVersion: "v1", kind: "Node", name: node },
  });
  expect(r.code, r.body).toBe(201);
}

beforeAll(async () => {
  s = await startTestApiServer();
  adm = await identity(s, s.admin);
  w1 = await identity(s, await s.pki.client("worker-1", "system:node:worker-1", ["system:nodes"]));
  for (const n of ["worker-1", "worker-2"]) {
    expect((await call(adm, "POST", "/api/v1/nodes", { metadata: { name: n } })).code).toBe(201);
  }
  for (const [kind, name] of [
    ["secrets", "mine-secret"],
    ["secrets", "env-secret"],
    ["secrets", "other-secret"],
    ["configmaps", "mine-cm"],
    ["configmaps", "other-cm"],
  ] as const) {
    const r = await call(adm, "POST", `/api/v1/namespaces/default/${kind}`, { metadata: { name } });
    expect(r.code, r.body).toBe(201);
  }
  const mine = pod("mine", {
    volumes: [
      { name: "s", secret: { secretName: "mine-secret" } },
      { name: "c", configMap: { name: "mine-cm" } },
    ],
    containers: [
      {
        name: "c",
        image: "busybox",
        env: [{ name: "X", valueFrom: { secretKeyRef: { name: "env-secret", key: "x" } } }],
      },
    ],
  });
  expect((await call(adm, "POST", "/api/v1/namespaces/default/pods", mine)).code).toBe(201);
  expect((await call(adm, "POST", "/api/v1/namespaces/default/pods", pod("theirs"))).code).toBe(201);
  await bindPod("mine", "worker-1");
  await bindPod("theirs", "worker-2");
}, 60_000);

afterAll(async () => {
  await s?.stop();
});

describe("the process exits (issue 25) no more", () => {
  it("answers a watch at resourceVersion=abc with 400, also when the connection then closes", async () => {
    for (const who of [adm, w1]) {
      const r = await call(
        who,
        "GET",
        "/api/v1/namespaces/default/pods?watch=1&resourceVersion=abc",
        undefined,
        {
          Connection: "close",
        },
      );
      expect(r.code).toBe(400);
      expect(r.json).toMatchObject({ kind: "Status", reason: "BadRequest", code: 400 });
      expect(String(r.json?.message)).toContain('resourceVersion: Invalid value: "abc"');
    }
    // The finding's exact probe: a node watching configmaps (now refused before the watch starts).
    const cm = await call(
      w1,
      "GET",
      "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=abc",
      undefined,
      {
        Connection: "close",
      },
    );
    expect(cm.code).toBe(403);
    await new Promise((r) => setTimeout(r, 200)); // the close events have run
    await expectAlive();
  });

  it("prints a Node whose stored kubeletVersion is not a string, in a table list and a table watch", async () => {
    const w = openWatch(adm, "/api/v1/nodes?watch=1", TABLE);
    expect(await w.code).toBe(200);
    try {
      await storeRaw("/registry/nodes/poison", {
        apiVersion: "v1",
        kind: "Node",
        metadata: { name: "poison", uid: "u-poison", creationTimestamp: { toString: 1 } },
        status: { nodeInfo: { kubeletVersion: { toString: 1 } }, conditions: "Ready" },
      });
      await w.until("row for the poisoned node", (ev) =>
        JSON.stringify(ev.object).includes('"cells":["poison"'),
      );
      const table = await call(adm, "GET", "/api/v1/nodes", undefined, TABLE);
      expect(table.code).toBe(200);
      const rows = table.json?.rows as { cells: unknown[] }[];
      expect(rows.map((r) => r.cells[0])).toContain("poison");
      const plain = await call(adm, "GET", "/api/v1/nodes");
      expect(plain.code).toBe(200);
    } finally {
      w.close();
    }
    await expectAlive();
  });

  it("keeps a field-selector watch on events running past an Event whose involvedObject.name is an object", async () => {
    const w = openWatch(
      adm,
      "/api/v1/namespaces/default/events?watch=1&fieldSelector=involvedObject.name%3Dweb",
    );
    expect(await w.code).toBe(200);
    try {
      await storeRaw("/registry/events/default/poison", {
        apiVersion: "v1",
        kind: "Event",
        metadata: { name: "poison", namespace: "default", uid: "u-ev" },
        involvedObject: { kind: "Pod", name: { toString: 1 } },
        reason: { toString: 1 },
      });
      const good = await call(adm, "POST", "/api/v1/namespaces/default/events", {
        metadata: { name: "good", namespace: "default" },
        involvedObject: { kind: "Pod", name: "web", namespace: "default" },
        reason: "Started",
        message: "ok",
        type: "Normal",
      });
      expect(good.code, good.body).toBe(201);
      await w.until(
        "ADDED for the good event",
        (ev) => ev.type === "ADDED" && (ev.object.metadata as { name?: string }).name === "good",
      );
      expect(
        w.events.some((ev) => (ev.object.metadata as { name?: string } | undefined)?.name === "poison"),
      ).toBe(false);
      const table = await call(adm, "GET", "/api/v1/namespaces/default/events", undefined, TABLE);
      expect(table.code).toBe(200);
    } finally {
      w.close();
    }
    await expectAlive();
  });

  it("keeps a watch running past a stored object without metadata", async () => {
    const w = openWatch(adm, "/api/v1/namespaces/poisoned/configmaps?watch=1");
    expect(await w.code).toBe(200);
    try {
      await storeRaw("/registry/configmaps/poisoned/no-metadata", { kind: "ConfigMap", metadata: null });
      await storeRaw("/registry/configmaps/poisoned/fine", {
        kind: "ConfigMap",
        apiVersion: "v1",
        metadata: { name: "fine", namespace: "poisoned", uid: "u-fine" },
      });
      await w.until("ADDED for the well-formed object", (ev) => ev.type === "ADDED");
    } finally {
      w.close();
      await s.store.client.delete().prefix("/registry/configmaps/poisoned/");
    }
    await expectAlive();
  });

  it("survives clients that vanish mid-TLS-handshake, mid-body and mid-watch", async () => {
    // Mid-handshake: half a ClientHello, then gone; and a plain-text request on the TLS port.
    for (const bytes of [
      Buffer.from("16030100c8010000c40303", "hex"),
      Buffer.from("GET / HTTP/1.1\r\n\r\n"),
    ]) {
      await new Promise<void>((resolve) => {
        const sock = netConnect(s.port, "127.0.0.1", () => {
          sock.write(bytes);
          setTimeout(() => sock.destroy(), 50);
        });
        sock.on("error", () => undefined);
        sock.on("close", () => resolve());
      });
    }
    // Mid-body: headers promise 1 MB, 20 bytes arrive, the socket resets.
    await new Promise<void>((resolve) => {
      const sock = tlsConnect(
        { host: "127.0.0.1", port: s.port, ca: adm.ca, cert: adm.cert, key: adm.key },
        () => {
          sock.write(
            "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n" +
              '{"metadata":{"name":',
          );
          setTimeout(() => sock.destroy(), 100);
        },
      );
      sock.on("error", () => undefined);
      sock.on("close", () => resolve());
    });
    // Mid-watch, many times over.
    for (let i = 0; i < 20; i++) {
      const w = openWatch(adm, "/api/v1/namespaces/default/configmaps?watch=1");
      expect(await w.code).toBe(200);
      w.close();
    }
    await new Promise((r) => setTimeout(r, 300));
    await expectAlive();
  });
});

describe("authorization bypass (issue 25) closed", () => {
  it("refuses a JSON patch through __proto__, constructor or prototype, and the node gains nothing", async () => {
    for (const path of [
      "/__proto__/nodeName",
      "/__proto__/node",
      "/metadata/constructor/prototype/node",
      "/constructor",
    ]) {
      const r = await call(
        w1,
        "PATCH",
        "/api/v1/nodes/worker-1",
        [{ op: "add", path, value: "worker-1" }],
        JSON_PATCH,
      );
      expect(r.code, r.body).toBe(422);
      expect(r.json).toMatchObject({ kind: "Status", reason: "Invalid" });
    }
    // A merge patch's __proto__ key is dropped at parsing; the rest applies.
    const merge = await call(
      w1,
      "PATCH",
      "/api/v1/nodes/worker-1",
      '{"__proto__":{"node":"worker-1","nodeName":"worker-1"},"metadata":{"labels":{"probe":"merged"}}}',
      MERGE_PATCH,
    );
    expect(merge.code, merge.body).toBe(200);
    expect((merge.json?.metadata as { labels?: Record<string, string> }).labels?.probe).toBe("merged");
    const polluted = {} as Record<string, unknown>;
    expect(polluted.node).toBeUndefined();
    expect(polluted.nodeName).toBeUndefined();
    // Still only its own pods:
    const del = await call(w1, "DELETE", "/api/v1/namespaces/default/pods/theirs");
    expect(del.code).toBe(403);
    expect(del.json?.message).toBe(
      `pods "theirs" is forbidden: User "system:node:worker-1" cannot delete resource "pods" in API group "" in the namespace "default": node 'worker-1' can only delete pods with spec.nodeName set to itself`,
    );
    // ...and the admin is not locked out.
    expect(
      (
        await call(adm, "POST", "/api/v1/namespaces/default/configmaps", {
          metadata: { name: "after-proto" },
        })
      ).code,
    ).toBe(201);
  });

  it("binds continue tokens to the collection they were issued for", async () => {
    for (const name of ["page-a", "page-b", "page-c"])
      await call(adm, "POST", "/api/v1/namespaces/default/configmaps", { metadata: { name } });
    const page = await call(adm, "GET", "/api/v1/namespaces/default/configmaps?limit=1");
    const token = (page.json?.metadata as { continue?: string }).continue!;
    expect(token).toBeTruthy();
    expect(
      (await call(adm, "GET", `/api/v1/namespaces/default/configmaps?limit=1&continue=${token}`)).code,
    ).toBe(200);
    const forged = Buffer.from(
      JSON.stringify({
        rv: Number(page.json && (page.json.metadata as { resourceVersion: string }).resourceVersion),
        start: "/registry/deployments/default/",
      }),
    ).toString("base64url");
    for (const [who, path, t] of [
      [adm, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", forged],
      [adm, "/api/v1/namespaces/default/services", token],
      [adm, "/api/v1/namespaces/kube-system/configmaps", token],
      [adm, "/api/v1/namespaces/default/configmaps", "not-a-token!"],
      [
        adm,
        "/api/v1/namespaces/default/configmaps",
        Buffer.from('{"rv":1,"start":"/registry/configmaps/default/../../secrets/"}').toString("base64url"),
      ],
    ] as const) {
      const r = await call(who, "GET", `${path}?limit=1&continue=${encodeURIComponent(t)}`);
      expect(r.code, `${path}: ${r.body}`).toBe(400);
      expect(String(r.json?.message)).toMatch(/^continue key is not valid/);
    }
    // A node may not list leases at all (it may touch its own Lease only).
    const node = await call(
      w1,
      "GET",
      `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases?limit=1&continue=${forged}`,
    );
    expect(node.code).toBe(403);
    // On collections a node may list, its forged token reads nothing else.
    for (const path of ["/api/v1/nodes", "/api/v1/pods", "/api/v1/namespaces/default/pods"]) {
      const ok = await call(w1, "GET", `${path}?limit=1`);
      expect(ok.code, `${path}: ${ok.body}`).toBe(200);
      const r = await call(w1, "GET", `${path}?limit=1&continue=${forged}`);
      expect(r.code, `${path}: ${r.body}`).toBe(400);
      expect(String(r.json?.message)).toMatch(/^continue key is not valid/);
      expect(r.body).not.toContain("Deployment");
    }
    // A token from the future is the client's error, not etcd's.
    const future = Buffer.from(
      JSON.stringify({ rv: 10_000_000, start: "/registry/configmaps/default/page-a" }),
    ).toString("base64url");
    const f = await call(adm, "GET", `/api/v1/namespaces/default/configmaps?limit=1&continue=${future}`);
    expect(f.code, f.body).toBe(400);
    await expectAlive();
  });

  it("lets a node read only the Secrets and ConfigMaps its pods reference", async () => {
    for (const path of [
      "/api/v1/secrets",
      "/api/v1/namespaces/default/secrets",
      "/api/v1/namespaces/default/configmaps",
      "/api/v1/namespaces/default/secrets?watch=1",
    ]) {
      expect((await call(w1, "GET", path)).code, path).toBe(403);
    }
    for (const path of ["secrets/mine-secret", "secrets/env-secret", "configmaps/mine-cm"]) {
      const r = await call(w1, "GET", `/api/v1/namespaces/default/${path}`);
      expect(r.code, `${path}: ${r.body}`).toBe(200);
    }
    for (const path of ["secrets/other-secret", "configmaps/other-cm"]) {
      const r = await call(w1, "GET", `/api/v1/namespaces/default/${path}`);
      expect(r.code, path).toBe(403);
      expect(String(r.json?.message)).toContain(
        "no relationship found between node 'worker-1' and this object",
      );
    }
  });

  it("lets a node write pods/status of its own pods only, never their labels or spec", async () => {
    const labels = await call(
      w1,
      "PATCH",
      "/api/v1/namespaces/default/pods/mine",
      { metadata: { labels: { evil: "yes" } } },
      MERGE_PATCH,
    );
    expect(labels.code).toBe(403);
    const own = await call(
      w1,
      "PATCH",
      "/api/v1/namespaces/default/pods/mine/status",
      { status: { phase: "Running" } },
      MERGE_PATCH,
    );
    expect(own.code, own.body).toBe(200);
    const theirs = await call(
      w1,
      "PATCH",
      "/api/v1/namespaces/default/pods/theirs/status",
      { status: { phase: "Failed" } },
      MERGE_PATCH,
    );
    expect(theirs.code).toBe(403);
    expect(String(theirs.json?.message)).toContain(
      "node 'worker-1' can only update pod status for pods with spec.nodeName set to itself",
    );
    expect((await call(w1, "POST", "/api/v1/namespaces/default/pods", pod("made-by-node"))).code).toBe(403);
    // Its own Node and Lease, and Events, it may write; another node's, not.
    expect((await call(w1, "PATCH", "/api/v1/nodes/worker-2/status", { status: {} }, MERGE_PATCH)).code).toBe(
      403,
    );
    const lease = (name: string) => ({
      metadata: { name, namespace: "kube-node-lease" },
      spec: { holderIdentity: name },
    });
    expect(
      (
        await call(
          w1,
          "POST",
          "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
          lease("worker-2"),
        )
      ).code,
    ).toBe(403);
    expect(
      (
        await call(
          w1,
          "POST",
          "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
          lease("worker-1"),
        )
      ).code,
    ).toBe(201);
    expect(
      (await call(w1, "GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/worker-1")).code,
    ).toBe(200);
    const ev = await call(w1, "POST", "/api/v1/namespaces/default/events", {
      metadata: { name: "from-node", namespace: "default" },
      involvedObject: { kind: "Node", name: "worker-1" },
      reason: "Starting",
      type: "Normal",
    });
    expect(ev.code, ev.body).toBe(201);
    // Events only about itself or its own pods (the body is checked, as for a Node or Lease).
    const event = (name: string, involvedObject: Record<string, string | undefined>) => ({
      metadata: { name, namespace: "default" },
      involvedObject,
      reason: "Probe",
      type: "Normal",
    });
    const aboutPod = await call(
      w1,
      "POST",
      "/api/v1/namespaces/default/events",
      event("about-mine", { kind: "Pod", namespace: "default", name: "mine" }),
    );
    expect(aboutPod.code, aboutPod.body).toBe(201);
    for (const about of [
      { kind: "Node", name: "worker-2" },
      { kind: "Pod", namespace: "default", name: "theirs" },
      { kind: "Secret", namespace: "default", name: "x" },
    ]) {
      const r = await call(
        w1,
        "POST",
        "/api/v1/namespaces/default/events",
        event(`about-${about.name}`, about),
      );
      expect(r.code, r.body).toBe(403);
      expect(r.body).toContain("node 'worker-1' can only create events about itself or pods bound to it");
    }
    // Deleting its own pod is graceful, as the kubelet does it.
    const del = await call(w1, "DELETE", "/api/v1/namespaces/default/pods/mine");
    expect(del.code, del.body).toBe(200);
  });
});

describe("the whole cluster stalls (issue 25) no more", () => {
  it("answers 422 or 413 to a body over etcd's request limit before etcd sees it, and others' reads keep working", async () => {
    const mib = 1024 * 1024;
    // As kube-apiserver: a ConfigMap over 1 MiB is the kind's 422; a valid object too big for
    // etcd, and any body over 3 MiB, is 413. None of them reaches etcd or costs others a read.
    const cases = [
      {
        body: JSON.stringify({ metadata: { name: "huge" }, data: { a: "x".repeat(2.2 * mib) } }),
        path: "/api/v1/namespaces/default/configmaps",
        code: 422,
        message: /^ConfigMap "huge" is invalid: \[\]: Too long: must have at most 1048576 bytes$/,
      },
      {
        body: JSON.stringify(
          pod("huge", { containers: [{ name: "c", image: "busybox", args: ["x".repeat(2.2 * mib)] }] }),
        ),
        path: "/api/v1/namespaces/default/pods",
        code: 413,
        message: /^Request entity too large: limit is \d+ bytes/,
      },
      {
        body: JSON.stringify({ metadata: { name: "huge" }, data: { a: "x".repeat(3.1 * mib) } }),
        path: "/api/v1/namespaces/default/configmaps",
        code: 413,
        message: /^Request entity too large: limit is 3145728 bytes$/,
      },
    ];
    const started = Date.now();
    const reads: Promise<RawResponse>[] = [];
    for (let i = 0; i < 2; i++) {
      for (const c of cases) {
        const r = await call(adm, "POST", c.path, c.body);
        expect(r.code, r.body.slice(0, 300)).toBe(c.code);
        expect(r.json).toMatchObject({
          kind: "Status",
          reason: c.code === 413 ? "RequestEntityTooLarge" : "Invalid",
        });
        expect(String(r.json?.message)).toMatch(c.message);
        for (let j = 0; j < 5; j++)
          reads.push(call(adm, "GET", "/api/v1/namespaces/default/configmaps?limit=5"));
      }
    }
    // Right after: admin reads answer at once.
    expect((await call(adm, "GET", "/api/v1/namespaces/default/configmaps?limit=5")).code).toBe(200);
    const codes = (await Promise.all(reads)).map((r) => r.code);
    expect(codes.filter((c) => c !== 200)).toEqual([]);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect((await call(adm, "GET", "/api/v1/namespaces/default/configmaps/huge")).code).toBe(404);
    expect((await call(adm, "GET", "/api/v1/namespaces/default/pods/huge")).code).toBe(404);
  });

  it("stops a JSON patch that doubles a value with copy once the result passes the limit", async () => {
    expect(
      (
        await call(adm, "POST", "/api/v1/namespaces/default/configmaps", {
          metadata: { name: "double" },
          data: {},
        })
      ).code,
    ).toBe(201);
    const ops: unknown[] = [{ op: "add", path: "/data/v0", value: "x".repeat(64 * 1024) }];
    // Each copy duplicates all that is there so far: a doubling every operation.
    for (let i = 1; i <= 11; i++) ops.push({ op: "copy", from: "/data", path: `/data/n${i}` });
    const before = process.memoryUsage().rss;
    const r = await call(adm, "PATCH", "/api/v1/namespaces/default/configmaps/double", ops, JSON_PATCH);
    expect(r.code, r.body.slice(0, 300)).toBe(413);
    expect(process.memoryUsage().rss - before).toBeLessThan(200 * 1024 * 1024);
    const after = await call(adm, "GET", "/api/v1/namespaces/default/configmaps/double");
    expect(after.json?.data).toEqual({});
  });
});

describe("500 where Kubernetes answers 4xx (issue 25), now 4xx", () => {
  it("answers 400 to JSON and YAML nested thousands of levels deep, in a body and in a patch", async () => {
    const deep = (n: number): string => '{"a":'.repeat(n) + "1" + "}".repeat(n);
    const create = await call(
      adm,
      "POST",
      "/api/v1/namespaces/default/configmaps",
      `{"metadata":{"name":"deep"},"x":${deep(5000)}}`,
    );
    expect(create.code).toBe(400);
    expect(create.json).toMatchObject({ kind: "Status", reason: "BadRequest" });
    const merge = await call(
      adm,
      "PATCH",
      "/api/v1/namespaces/default/configmaps/double",
      `{"x":${deep(5000)}}`,
      MERGE_PATCH,
    );
    expect(merge.code).toBe(400);
    const arrays = await call(
      adm,
      "PATCH",
      "/api/v1/namespaces/default/configmaps/double",
      `[{"op":"add","path":"/x","value":${"[".repeat(50_000)}${"]".repeat(50_000)}}]`,
      JSON_PATCH,
    );
    expect(arrays.code).toBe(400);
    // In YAML, 5,000 nested flow sequences once took the process down (heap exhausted inside the parser).
    const yaml = await call(
      adm,
      "POST",
      "/api/v1/namespaces/default/configmaps",
      "[".repeat(5000) + "]".repeat(5000),
      {
        "Content-Type": "application/yaml",
      },
    );
    expect(yaml.code).toBe(400);
    expect(String(yaml.json?.message)).toContain("nested deeper than 100 levels");
    await expectAlive();
  });

  it("answers 400 to a path that is not valid percent-encoding", async () => {
    for (const path of [
      "/api/v1/namespaces/%FF/configmaps",
      "/api/v1/namespaces/default/configmaps/%E0%A4%A",
      "/api/v1/namespaces/default/configmaps/%FF",
    ]) {
      const r = await call(adm, "GET", path);
      expect(r.code, path).toBe(400);
      expect(r.json).toMatchObject({ kind: "Status", reason: "BadRequest" });
    }
  });

  it("answers 400 to gracePeriodSeconds=1e300, in the query and in the body", async () => {
    const made = await call(adm, "POST", "/api/v1/namespaces/default/configmaps", {
      metadata: { name: "grace" },
    });
    expect(made.code, made.body).toBe(201);
    const q = await call(
      adm,
      "DELETE",
      "/api/v1/namespaces/default/configmaps/grace?gracePeriodSeconds=1e300",
    );
    expect(q.code).toBe(400);
    expect(q.json?.message).toBe(
      'invalid value for query parameter "gracePeriodSeconds": strconv.ParseInt: parsing "1e300": invalid syntax',
    );
    const b = await call(
      adm,
      "DELETE",
      "/api/v1/namespaces/default/configmaps/grace",
      '{"gracePeriodSeconds":1e300}',
    );
    expect(b.code).toBe(400);
    expect((await call(adm, "GET", "/api/v1/namespaces/default/configmaps/grace")).code).toBe(200);
  });
});

describe("accepted where Kubernetes refuses (issue 25), now refused", () => {
  it("refuses a JSON patch of 10,001 operations with upstream's 413", async () => {
    const ops = Array.from({ length: 10_001 }, () => ({
      op: "test",
      path: "/metadata/name",
      value: "double",
    }));
    const r = await call(adm, "PATCH", "/api/v1/namespaces/default/configmaps/double", ops, JSON_PATCH);
    expect(r.code).toBe(413);
    expect(r.json?.message).toBe("The allowed maximum operations in a JSON patch is 10000, got 10001");
    const ok = await call(
      adm,
      "PATCH",
      "/api/v1/namespaces/default/configmaps/double",
      ops.slice(0, 10_000),
      JSON_PATCH,
    );
    expect(ok.code).toBe(200);
  });

  it("refuses a label selector key of 300 characters", async () => {
    const key = "a".repeat(300);
    for (const sel of [`${key}=x`, key, `${key} in (a)`]) {
      const r = await call(
        adm,
        "GET",
        `/api/v1/namespaces/default/configmaps?labelSelector=${encodeURIComponent(sel)}`,
      );
      expect(r.code).toBe(400);
      expect(String(r.json?.message)).toContain(
        `invalid label key "${key}": name part must be no more than 63 characters`,
      );
    }
    expect(
      (await call(adm, "GET", `/api/v1/namespaces/default/configmaps?labelSelector=${"a".repeat(63)}%3Dx`))
        .code,
    ).toBe(200);
  });

  it("refuses limit=abc, gracePeriodSeconds=abc and timeoutSeconds=abc", async () => {
    for (const [method, path, param] of [
      ["GET", "/api/v1/namespaces/default/configmaps?limit=abc", "limit"],
      ["GET", "/api/v1/namespaces/default/configmaps?limit=1.5", "limit"],
      ["DELETE", "/api/v1/namespaces/default/configmaps/grace?gracePeriodSeconds=abc", "gracePeriodSeconds"],
      ["GET", "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=abc", "timeoutSeconds"],
      ["GET", "/api/v1/namespaces/default/configmaps?limit=99999999999999999999", "limit"],
    ] as const) {
      const r = await call(adm, method, path);
      expect(r.code, path).toBe(400);
      expect(String(r.json?.message)).toContain(`invalid value for query parameter "${param}"`);
    }
    expect((await call(adm, "GET", "/api/v1/namespaces/default/configmaps/grace")).code).toBe(200);
  });
});

describe("an etcd that stops answering (issue 17)", () => {
  it("answers a watch with 504 instead of dying, and serves again once etcd is back", async () => {
    const port = new URL(s.etcd.endpoint).port;
    const ss = execFileSync("ss", ["-Hltnp", `sport = :${port}`]).toString();
    const pid = Number(/pid=(\d+)/.exec(ss)?.[1]);
    expect(pid).toBeGreaterThan(0);
    process.kill(pid, "SIGSTOP");
    try {
      const r = await rawRequest(s.port, adm, "GET", "/apis/apps/v1/namespaces/default/deployments?watch=1", {
        headers: { Connection: "close" },
        timeoutMs: 30_000,
      });
      expect([503, 504]).toContain(r.code);
      expect(r.json).toMatchObject({ kind: "Status" });
      expect(r.body).not.toMatch(/\n\s+at /); // no stack
    } finally {
      process.kill(pid, "SIGCONT");
    }
    const deadline = Date.now() + 20_000;
    for (;;) {
      const r = await call(adm, "GET", "/api/v1/namespaces/default/configmaps");
      if (r.code === 200) break;
      if (Date.now() > deadline)
        throw new Error(`lab-server did not serve again within 20 s of etcd resuming: ${r.body}`);
      await new Promise((res) => setTimeout(res, 500));
    }
  }, 60_000);
});

/** Every line of a watch that ends by itself (an ERROR event, then EOF). */
async function watchLines(
  who: Identity,
  path: string,
): Promise<{ code: number; events: WatchStream["events"] }> {
  const r = await rawRequest(s.port, who, "GET", path, { timeoutMs: 15_000 });
  const events = r.body
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as WatchStream["events"][number]);
  return { code: r.code, events };
}

const TOO_OLD = /^too old resource version: 1 \((\d+)\)$/;

describe("a watch from resourceVersion=1 (issue 25) is 410, never a replay of etcd's history", () => {
  it("answers 410 Expired `too old resource version: 1 (N)` with no compaction yet, and list-then-watch still resumes", async () => {
    for (const name of ["hist-a", "hist-b"]) {
      const r = await call(adm, "POST", "/api/v1/namespaces/default/configmaps", { metadata: { name } });
      expect(r.code, r.body).toBe(201);
    }
    for (const who of [adm, w1]) {
      const path =
        who === adm
          ? "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=1"
          : "/api/v1/nodes?watch=1&resourceVersion=1";
      const { code, events } = await watchLines(who, path);
      // As kube-apiserver: the watch is established, its only event is the ERROR, then EOF.
      expect(code).toBe(200);
      expect(events.map((e) => e.type)).toEqual(["ERROR"]);
      expect(events[0]!.object).toMatchObject({ kind: "Status", code: 410, reason: "Expired" });
      expect(String(events[0]!.object.message)).toMatch(TOO_OLD);
    }
    // A client that lists and then watches from the list's resourceVersion gets the next change.
    const list = await call(adm, "GET", "/api/v1/namespaces/default/serviceaccounts");
    expect(list.code, list.body).toBe(200);
    const rv = (list.json?.metadata as { resourceVersion: string }).resourceVersion;
    await call(adm, "POST", "/api/v1/namespaces/default/configmaps", { metadata: { name: "hist-c" } });
    const made = await call(adm, "POST", "/api/v1/namespaces/default/serviceaccounts", {
      metadata: { name: "after-list" },
    });
    expect(made.code, made.body).toBe(201);
    const w = openWatch(adm, `/api/v1/namespaces/default/serviceaccounts?watch=1&resourceVersion=${rv}`);
    try {
      expect(await w.code).toBe(200);
      await w.until(
        "ADDED after-list",
        (ev) => ev.type === "ADDED" && (ev.object.metadata as { name?: string }).name === "after-list",
      );
      expect(w.events.filter((e) => e.type === "ERROR")).toEqual([]);
    } finally {
      w.close();
    }
    await expectAlive();
  });

  it("compacts etcd one lab-server per round, to the revision of the round before; then rv=1 is 410", async () => {
    // Two lab-servers' compactors on one etcd, taking turns as their timers would.
    const other = new EtcdStore({ hosts: s.etcd.endpoint });
    try {
      let a: CompactorState = { version: 0, revision: 0 };
      let b: CompactorState = { version: 0, revision: 0 };
      a = await compactRound(s.store, a); // wins round 1: nothing seen an interval ago, no compaction
      b = await compactRound(other, b); // loses round 1: learns the version
      expect(a.version).toBe(1);
      expect(b.version).toBe(1);
      await s.store.client.get("/registry/configmaps/default/hist-a").revision(2).exec(); // not compacted
      const seen = a.revision;
      await call(adm, "POST", "/api/v1/namespaces/default/configmaps", { metadata: { name: "round-2" } });
      a = await compactRound(s.store, a); // wins round 2: compacts to what it saw in round 1
      b = await compactRound(other, b); // loses again: one compaction per round, whoever runs it
      expect([a.version, b.version]).toEqual([2, 2]);
      await expect(
        s.store.client
          .get("x")
          .revision(seen - 1)
          .exec(),
      ).rejects.toThrow(/compacted/);
      await s.store.client.get("x").revision(seen).exec();
      // Compacting again, or behind someone else's compaction, is harmless.
      await other.compact(seen - 1);
      await other.compact(seen);
      const { code, events } = await watchLines(
        adm,
        "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=1",
      );
      expect(code).toBe(200);
      expect(events.map((e) => e.type)).toEqual(["ERROR"]);
      expect(events[0]!.object).toMatchObject({ kind: "Status", code: 410, reason: "Expired" });
      expect(String(events[0]!.object.message)).toMatch(TOO_OLD);
      // A continue token from before the compaction is 410 too (client-go lists afresh).
    } finally {
      await other.close();
    }
    await expectAlive();
  });

  it("takes --etcd-compaction-interval as kube-apiserver does: a duration, 0 for never", () => {
    expect(compactionInterval(undefined)).toBe(300_000);
    expect(compactionInterval("5m")).toBe(300_000);
    expect(compactionInterval("90s")).toBe(90_000);
    expect(compactionInterval("0")).toBe(0);
    expect(compactionInterval("0s")).toBe(0);
    expect(() => compactionInterval("often")).toThrow(/--etcd-compaction-interval "often" is not a duration/);
  });
});

describe("a watch whose etcd stream fails after the headers went out", () => {
  it("ends with an ERROR event carrying a Status, then EOF, and the server lives", async () => {
    // An idle resource: its watch resumes from the revision it was opened at.
    const w = openWatch(adm, "/apis/apps/v1/namespaces/default/replicasets?watch=1");
    expect(await w.code).toBe(200);
    const other = new EtcdStore({ hosts: s.etcd.endpoint });
    try {
      // Another lab-server compacts past it: the open watch is in step with etcd and goes on...
      for (let i = 0; i < 3; i++)
        await call(adm, "POST", "/api/v1/namespaces/default/configmaps", { metadata: { name: `mid-${i}` } });
      await other.compact(await other.revision());
      await new Promise((r) => setTimeout(r, 300));
      expect(w.events).toEqual([]);
      // ...until the connection to etcd breaks: the stream resumes on a compacted revision.
      const port = new URL(s.etcd.endpoint).port;
      execFileSync("ss", ["-K", "dst", "127.0.0.1", "dport", "=", `:${port}`]);
      await w.until("an ERROR event", (ev) => ev.type === "ERROR", 20_000);
      await Promise.race([
        w.ended,
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error("no EOF 5 s after the ERROR event")), 5_000),
        ),
      ]);
      expect(w.events.map((e) => e.type)).toEqual(["ERROR"]);
      expect(w.events[0]!.object).toMatchObject({
        kind: "Status",
        status: "Failure",
        code: 410,
        reason: "Expired",
      });
    } finally {
      w.close();
      await other.close();
    }
    await expectAlive();
  }, 40_000);
});
