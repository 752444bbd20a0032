/**
 * Property-based fuzzing of lab-server's HTTP surface (issue 25): bodies, patches, query parameters
 * and paths from fast-check, sent to a real lab-server over real etcd on loopback, as the admin and
 * as a node. The properties: no answer is a 5xx (bar 503/504, the documented answers to an etcd
 * outage), every error is a Kubernetes Status, nothing is polluted, and the server stays alive.
 * Each property is bounded in runs and time, so the suite stays under a minute.
 */
import { Agent } from "node:https";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { groupVersion, RESOURCES } from "../../api/resources.ts";
import { validateObject } from "../../api/validation.ts";
import { identity, rawRequest, type Identity, type RawResponse } from "../helpers/raw-https.ts";
import { startTestApiServer, type TestApiServer } from "../helpers/test-apiserver.ts";

let s: TestApiServer;
let adm: Identity;
let node: Identity;
const agent = new Agent({ keepAlive: true, maxSockets: 4 });

/** Per property: at most this many runs, and no new run after this long. */
const RUNS = Number(process.env.FUZZ_RUNS ?? 120);
const TIME_LIMIT_MS = Number(process.env.FUZZ_TIME_LIMIT_MS ?? 9_000);

/** Status codes seen per property: the fuzz must reach both the success and the refusal paths. */
const seen = new Map<string, number[]>();
function record(property: string, code: number): void {
  seen.set(property, [...(seen.get(property) ?? []), code]);
}
function expectBothPaths(property: string): void {
  const codes = seen.get(property) ?? [];
  expect(
    codes.some((c) => c < 300),
    `${property}: no success among ${codes.length} answers`,
  ).toBe(true);
  expect(
    codes.some((c) => c >= 400),
    `${property}: no refusal among ${codes.length} answers`,
  ).toBe(true);
}

const send = (
  who: Identity,
  method: string,
  path: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<RawResponse> => rawRequest(s.port, who, method, path, { body, headers, agent, timeoutMs: 15_000 });

/** The property every answer must have; returns the failure for fast-check to shrink on. */
function acceptable(r: RawResponse, what: string): void {
  const documentedOutage =
    (r.code === 503 || r.code === 504) && ["ServiceUnavailable", "Timeout"].includes(String(r.json?.reason));
  if (r.code >= 500 && !documentedOutage)
    throw new Error(`${what} answered ${r.code}: ${r.body.slice(0, 400)}`);
  if (r.code >= 400 && r.json?.kind !== "Status")
    throw new Error(`${what} answered ${r.code} without a Status: ${r.body.slice(0, 200)}`);
  if (/\n\s+at .+:\d+:\d+/.test(r.body))
    throw new Error(`${what} leaked a stack trace: ${r.body.slice(0, 400)}`);
}

function unpolluted(): void {
  const probe = {} as Record<string, unknown>;
  for (const k of ["node", "nodeName", "polluted", "x", "a", "allowed"])
    if (probe[k] !== undefined) throw new Error(`Object.prototype.${k} was set`);
}

const COLLECTIONS = [
  "/api/v1/namespaces/default/configmaps",
  "/api/v1/namespaces/default/secrets",
  "/api/v1/namespaces/default/pods",
  "/api/v1/namespaces/default/services",
  "/api/v1/namespaces/default/events",
  "/api/v1/nodes",
  "/api/v1/namespaces",
  "/apis/apps/v1/namespaces/default/deployments",
  "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
];

const name = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?$/);
const nastyKey = fc.constantFrom(
  "__proto__",
  "constructor",
  "prototype",
  "metadata",
  "spec",
  "status",
  "data",
  "$patch",
  "toString",
);
const nastyValue = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  fc.constantFrom({ toString: 1 }, { valueOf: {} }, 1e300, -0, "", "\u0000", "x".repeat(300)),
);
/** JSON-ish objects biased towards keys that matter to lab-server. */
const object = fc.dictionary(fc.oneof(nastyKey, fc.string({ maxLength: 12 })), nastyValue, { maxKeys: 6 });
const kobject = fc.record({
  apiVersion: fc.oneof(
    fc.constantFrom("v1", "apps/v1", "coordination.k8s.io/v1"),
    fc.string({ maxLength: 8 }),
  ),
  kind: fc.oneof(
    fc.constantFrom("ConfigMap", "Secret", "Pod", "Service", "Event", "Node", "Deployment", "Lease"),
    fc.string({ maxLength: 8 }),
  ),
  metadata: fc.oneof(
    fc.record({
      name,
      labels: fc.option(fc.dictionary(fc.string({ maxLength: 70 }), nastyValue, { maxKeys: 3 }), {
        nil: undefined,
      }),
      finalizers: fc.option(nastyValue, { nil: undefined }),
    }),
    object,
  ),
  spec: fc.option(object, { nil: undefined }),
  data: fc.option(object, { nil: undefined }),
  status: fc.option(object, { nil: undefined }),
});
/** A ConfigMap that may well be valid. */
const plausible = fc.record({
  metadata: fc.record({
    name,
    labels: fc.option(fc.dictionary(name, name, { maxKeys: 3 }), { nil: undefined }),
    annotations: fc.option(
      fc.dictionary(name, fc.oneof(fc.string({ maxLength: 20 }), nastyValue), { maxKeys: 3 }),
      {
        nil: undefined,
      },
    ),
  }),
  data: fc.option(fc.dictionary(name, fc.oneof(fc.string({ maxLength: 40 }), nastyValue), { maxKeys: 3 }), {
    nil: undefined,
  }),
});
const deep = fc.integer({ min: 50, max: 4000 }).map((n) => '{"a":'.repeat(n) + "1" + "}".repeat(n));

beforeAll(async () => {
  s = await startTestApiServer();
  adm = await identity(s, s.admin);
  node = await identity(s, await s.pki.client("fuzz-node", "system:node:fuzz-node", ["system:nodes"]));
  for (const [path, body] of [
    ["/api/v1/nodes", { metadata: { name: "fuzz-node" } }],
    ["/api/v1/namespaces/default/configmaps", { metadata: { name: "target" }, data: { a: "1" } }],
    [
      "/apis/apps/v1/namespaces/default/deployments",
      {
        metadata: { name: "target" },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: "t" } },
          template: {
            metadata: { labels: { app: "t" } },
            spec: { containers: [{ name: "c", image: "busybox" }] },
          },
        },
      },
    ],
  ] as const) {
    const r = await send(adm, "POST", path, JSON.stringify(body));
    expect(r.code, r.body).toBe(201);
  }
}, 60_000);

afterAll(async () => {
  agent.destroy();
  await s?.stop();
});

describe("lab-server under fuzzed input", () => {
  it("answers every body with an object or a 4xx Status", async () => {
    const garbage = fc.record({
      path: fc.constantFrom(...COLLECTIONS),
      type: fc.constantFrom(
        "application/json",
        "application/yaml",
        "application/vnd.kubernetes.protobuf",
        "text/plain",
      ),
      body: fc.oneof(
        kobject.map((o) => JSON.stringify(o)),
        fc.json({ maxDepth: 5 }),
        fc.string({ maxLength: 200 }),
        deep,
        fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString("latin1")),
      ),
    });
    // A ConfigMap that may well be valid, in JSON or YAML: it reaches the registry and etcd.
    const likely = fc.record({
      path: fc.constant("/api/v1/namespaces/default/configmaps"),
      type: fc.constantFrom("application/json", "application/yaml"),
      body: plausible.map((o) => JSON.stringify(o)),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(garbage, likely),
        fc.constantFrom(adm, node),
        async ({ path, type, body }, who) => {
          const r = await send(who, "POST", path, body, { "Content-Type": type });
          record("bodies", r.code);
          acceptable(r, `POST ${path} (${type})`);
          unpolluted();
        },
      ),
      { numRuns: RUNS, interruptAfterTimeLimit: TIME_LIMIT_MS },
    );
    expectBothPaths("bodies");
  }, 60_000);

  it("applies or refuses every patch, never polluting and never 5xx", async () => {
    const pointer = fc
      .array(
        fc.oneof(
          nastyKey,
          fc.constantFrom("data", "a", "-", "0", "spec", "replicas", "metadata", "labels"),
          fc.string({ maxLength: 4 }),
        ),
        {
          maxLength: 4,
        },
      )
      .map((segs) => (segs.length ? "/" + segs.join("/") : ""));
    const op = fc.record({
      op: fc.constantFrom("add", "remove", "replace", "move", "copy", "test", "bogus"),
      path: fc.oneof(pointer, fc.jsonValue({ maxDepth: 1 })),
      from: fc.option(fc.oneof(pointer, fc.integer()), { nil: undefined }),
      value: fc.option(nastyValue, { nil: undefined }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(
          "/api/v1/namespaces/default/configmaps/target",
          "/apis/apps/v1/namespaces/default/deployments/target",
          "/apis/apps/v1/namespaces/default/deployments/target/scale",
          "/apis/apps/v1/namespaces/default/deployments/target/status",
          "/api/v1/nodes/fuzz-node",
          "/api/v1/nodes/fuzz-node/status",
        ),
        fc.constantFrom(adm, node),
        fc.oneof(
          fc.record({
            type: fc.constant("application/json-patch+json"),
            body: fc.array(op, { maxLength: 12 }).map((ops) => JSON.stringify(ops)),
          }),
          fc.record({
            type: fc.constantFrom("application/merge-patch+json", "application/strategic-merge-patch+json"),
            body: fc.oneof(
              object.map((o) => JSON.stringify(o)),
              kobject.map((o) => JSON.stringify(o)),
              fc.json({ maxDepth: 4 }),
              deep,
            ),
          }),
          fc.record({ type: fc.string({ maxLength: 20 }), body: fc.string({ maxLength: 40 }) }),
        ),
        async (path, who, { type, body }) => {
          const r = await send(who, "PATCH", path, body, { "Content-Type": type });
          record("patches", r.code);
          acceptable(r, `PATCH ${path} (${type}) ${body.slice(0, 120)}`);
          unpolluted();
        },
      ),
      { numRuns: RUNS, interruptAfterTimeLimit: TIME_LIMIT_MS },
    );
    expectBothPaths("patches");
  }, 60_000);

  it("parses every query string strictly: a list, a watch or a delete, never 5xx", async () => {
    const value = fc.oneof(
      fc.string({ maxLength: 30 }),
      fc.constantFrom(
        "abc",
        "1e300",
        "-1",
        "0",
        "10",
        "1.5",
        "99999999999999999999",
        "%FF",
        "a".repeat(300) + "=x",
        "app in (a,b)",
        "!x",
        "metadata.name=target",
        "spec.bogus=1",
      ),
      fc.uint8Array({ maxLength: 24 }).map((b) => Buffer.from(b).toString("base64url")),
    );
    const params = fc.dictionary(
      fc.constantFrom(
        "limit",
        "continue",
        "labelSelector",
        "fieldSelector",
        "resourceVersion",
        "gracePeriodSeconds",
        "propagationPolicy",
        "dryRun",
        "includeObject",
        "allowWatchBookmarks",
      ),
      value,
      { maxKeys: 4 },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...COLLECTIONS),
        fc.constantFrom("GET", "GET", "GET", "WATCH", "DELETE"),
        fc.constantFrom(adm, node),
        params,
        async (path, mode, who, p) => {
          const q = new URLSearchParams(p);
          let method = mode;
          let target = path;
          if (mode === "WATCH") {
            method = "GET";
            q.set("watch", "1");
            q.set("timeoutSeconds", "1"); // a watch that opens must end by itself
          } else if (mode === "DELETE") {
            // A collection delete of nothing (the fuzz must not empty the fixtures).
            target = "/api/v1/namespaces/default/configmaps/does-not-exist";
          }
          const r = await send(who, method, `${target}?${q.toString()}`);
          record("queries", r.code);
          acceptable(r, `${mode} ${target}?${q.toString()}`);
        },
      ),
      { numRuns: RUNS, interruptAfterTimeLimit: TIME_LIMIT_MS },
    );
    expectBothPaths("queries");
  }, 60_000);

  it("routes every path, however encoded, to an object or a 4xx", async () => {
    const segment = fc.oneof(
      fc.constantFrom(
        "api",
        "apis",
        "v1",
        "apps",
        "namespaces",
        "default",
        "pods",
        "configmaps",
        "nodes",
        "status",
        "scale",
        "log",
        "exec",
        "binding",
        "..",
        ".",
        "%FF",
        "%E0%A4%A",
        "%2F",
        "%00",
        "%",
      ),
      fc.string({ maxLength: 10 }).map(encodeURIComponent),
      fc
        .uint8Array({ maxLength: 6 })
        .map((b) => [...b].map((x) => `%${x.toString(16).padStart(2, "0")}`).join("")),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(segment, { minLength: 1, maxLength: 8 }),
        fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"),
        fc.constantFrom(adm, node),
        async (segs, method, who) => {
          const path = "/" + segs.join("/");
          const r = await send(who, method, path, method === "GET" || method === "DELETE" ? undefined : "{}");
          record("paths", r.code);
          acceptable(r, `${method} ${path}`);
        },
      ),
      { numRuns: RUNS, interruptAfterTimeLimit: TIME_LIMIT_MS },
    );
    expect(seen.get("paths")?.some((c) => c >= 400)).toBe(true);
    // And after all of it, the server still serves everyone.
    expect((await send(adm, "GET", "/version")).code).toBe(200);
    expect((await send(adm, "GET", "/api/v1/namespaces/default/configmaps/target")).code).toBe(200);
    expect((await send(node, "GET", "/api/v1/nodes/fuzz-node")).code).toBe(200);
  }, 60_000);

  it("leaves no stored object that fails its kind's schema", async () => {
    // Everything the fuzz got stored, of every served kind, read back as the admin and checked by
    // the same validation the strategies run before a write reaches etcd.
    const failures: string[] = [];
    let checked = 0;
    for (const info of RESOURCES) {
      const path = `${info.group ? `/apis/${groupVersion(info)}` : "/api/v1"}/${info.plural}`;
      const r = await send(adm, "GET", path);
      expect(r.code, `${path}: ${r.body.slice(0, 200)}`).toBe(200);
      for (const item of (r.json?.items ?? []) as Record<string, unknown>[]) {
        checked++;
        const obj = { apiVersion: groupVersion(info), kind: info.kind, ...item };
        const causes = validateObject(info.kind, obj, info.namespaced);
        if (causes.length)
          failures.push(
            `${info.plural} ${JSON.stringify((item.metadata as { name?: unknown } | undefined)?.name)}: ${JSON.stringify(causes).slice(0, 300)}`,
          );
      }
    }
    expect(failures).toEqual([]);
    // The fuzz did store objects (a suite that stored nothing would prove nothing).
    expect(checked).toBeGreaterThan(5);
    expect(seen.get("bodies")?.some((c) => c === 201)).toBe(true);
  }, 60_000);
});
