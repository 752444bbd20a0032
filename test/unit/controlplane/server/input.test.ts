import { createServer, request, type Server } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import {
  jsonPatch,
  MAX_JSON_PATCH_OPERATIONS,
  mergePatch,
  PatchError,
  strategicMerge,
} from "../../../../api/patch.ts";
import {
  matchesFields,
  matchesLabels,
  parseLabelSelector,
  selectorObjectToString,
} from "../../../../api/selectors.ts";
import { ApiError } from "../../../../api/status.ts";
import { toTable } from "../../../../api/table.ts";
import { podReferences } from "../../../../controlplane/authz.ts";
import { MAX_DEPTH, parseBody } from "../../../../controlplane/server/body.ts";
import { guaranteedUpdate } from "../../../../controlplane/server/guaranteed-update.ts";
import { checkContinueToken, intParam } from "../../../../controlplane/server/query.ts";
import { Reply, toApiError } from "../../../../controlplane/server/reply.ts";
import { parseResourcePath } from "../../../../controlplane/server/request-info.ts";

const token = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString("base64url");

describe("the error boundary's Reply", () => {
  let server: Server | undefined;
  afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

  /** One real HTTP exchange on loopback: the handler gets a Reply, the test gets the raw answer. */
  async function exchange(handle: (reply: Reply) => void): Promise<{ code: number; body: string }> {
    server = createServer((_req, res) => handle(new Reply(res)));
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as { port: number }).port;
    return new Promise((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path: "/", agent: false }, (res) => {
        let body = "";
        res.on("data", (d: Buffer) => (body += d.toString()));
        res.on("end", () => resolve({ code: res.statusCode ?? 0, body }));
      });
      req.setTimeout(5000, () => req.destroy(new Error("no answer from the test server in 5 s")));
      req.on("error", reject);
      req.end();
    });
  }

  it("answers a Status before the headers, and ignores every later write or end", async () => {
    const r = await exchange((reply) => {
      reply.fail(new ApiError(400, "BadRequest", "bad"));
      reply.fail(new Error("again"));
      reply.end();
      reply.json(200, {});
      reply.line({ type: "ADDED" });
    });
    expect(r.code).toBe(400);
    expect(JSON.parse(r.body)).toMatchObject({ kind: "Status", code: 400, message: "bad" });
  });

  it("ends a started stream with an ERROR event carrying the Status, once", async () => {
    const r = await exchange((reply) => {
      reply.line({ type: "ADDED", object: { a: 1 } });
      reply.fail(
        Object.assign(new Error("4 DEADLINE_EXCEEDED: Deadline exceeded"), {
          name: "GRPCDeadlineExceededError",
        }),
      );
      reply.fail(new Error("second"));
      reply.end();
    });
    expect(r.code).toBe(200);
    const lines = r.body
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; object: { code?: number } });
    expect(lines.map((l) => l.type)).toEqual(["ADDED", "ERROR"]);
    expect(lines[1]!.object).toMatchObject({ kind: "Status", code: 504, reason: "Timeout" });
  });

  it("maps etcd outages to 503/504 and anything else to a 500 with the message, never a stack", () => {
    expect(
      toApiError(
        Object.assign(new Error("14 UNAVAILABLE: No connection established"), {
          name: "GRPCUnavailableError",
        }),
      ).code,
    ).toBe(503);
    expect(toApiError(new Error("etcdserver: request is too large")).code).toBe(413);
    const other = toApiError(new TypeError("x is not a function\n    at foo (bar.ts:1:1)"));
    expect(other.code).toBe(500);
    expect(other.message).toBe("Internal error occurred: x is not a function");
    expect(toApiError(new PatchError("too many", 413)).code).toBe(413);
  });
});

describe("request input", () => {
  it("parses integer query parameters as strictly as strconv.ParseInt", () => {
    const q = (v: string) => new URLSearchParams({ limit: v });
    expect(intParam(q("10"), "limit")).toBe(10);
    expect(intParam(new URLSearchParams(), "limit")).toBeUndefined();
    for (const bad of ["abc", "1e300", "1.5", "", " 1", "0x10", "99999999999999999999"]) {
      expect(() => intParam(q(bad), "limit"), bad).toThrow(/invalid value for query parameter "limit"/);
    }
  });

  it("refuses bodies nested past the limit and drops __proto__ keys", () => {
    const deep = (n: number) => Buffer.from("[".repeat(n) + "]".repeat(n));
    expect(() => parseBody(deep(MAX_DEPTH), "application/json")).not.toThrow();
    expect(() => parseBody(deep(MAX_DEPTH + 1), "application/json")).toThrow(/nested deeper than 100 levels/);
    expect(() => parseBody(deep(200_000), "application/json")).toThrow(/nested deeper/);
    const parsed = parseBody(
      Buffer.from('{"__proto__":{"x":1},"a":{"__proto__":{"y":2},"b":1}}'),
      "application/json",
    ) as Record<string, unknown>;
    expect(Object.keys(parsed)).toEqual(["a"]);
    expect(Object.prototype.hasOwnProperty.call(parsed.a, "__proto__")).toBe(false);
    const yaml = parseBody(Buffer.from("__proto__:\n  x: 1\nb: 2\n"), "application/yaml") as Record<
      string,
      unknown
    >;
    expect(Object.keys(yaml)).toEqual(["b"]);
    // Deep YAML flow collections exhaust the heap inside the yaml library (a fatal error, not an
    // exception): refused before parsing.
    for (const n of [101, 5000, 500_000]) {
      expect(() => parseBody(deep(n), "application/yaml")).toThrow(/nested deeper than 100 levels/);
    }
    expect(() => parseBody(Buffer.from(`${" ".repeat(201)}a: 1\n`), "application/yaml")).toThrow(
      /nested deeper/,
    );
    expect(() => parseBody(Buffer.from(`${"- ".repeat(150)}x\n`), "application/yaml")).toThrow(
      /nested deeper/,
    );
    expect(parseBody(Buffer.from("a:\n  - b: [1, {c: '[x'}]\n"), "application/yaml")).toEqual({
      a: [{ b: [1, { c: "[x" }] }],
    });
  });

  it("answers 400 for a path that is not percent-encoded UTF-8", () => {
    expect(() => parseResourcePath("/api/v1/namespaces/%FF/pods")).toThrow(/not valid percent-encoded UTF-8/);
    expect(parseResourcePath("/api/v1/namespaces/default/pods/a%20b")?.name).toBe("a b");
  });

  it("checks continue tokens against the collection and the current revision", () => {
    const prefix = "/registry/configmaps/default/";
    expect(() => checkContinueToken(token({ rv: 5, start: `${prefix}a` }), prefix, 10)).not.toThrow();
    const bad: [string, RegExp][] = [
      ["%%%", /base64url/],
      [token([1]), /not an object/],
      [token({ rv: "5", start: `${prefix}a` }), /resourceVersion/],
      [token({ rv: 5, start: "" }), /start key empty/],
      [token({ rv: 5, start: "/registry/secrets/default/a" }), /different resource/],
      [token({ rv: 5, start: `${prefix}../../secrets/x` }), /different resource/],
      [token({ rv: 11, start: `${prefix}a` }), /newer than the current one/],
    ];
    for (const [t, why] of bad) {
      expect(() => checkContinueToken(t, prefix, 10)).toThrow(why);
      expect(() => checkContinueToken(t, prefix, 10)).toThrow(/^continue key is not valid/);
    }
  });

  it("label selectors refuse keys and values Kubernetes refuses", () => {
    expect(() => parseLabelSelector(`${"a".repeat(64)}=x`)).toThrow(
      /name part must be no more than 63 characters/,
    );
    expect(() => parseLabelSelector(`app=${"v".repeat(64)}`)).toThrow(/must be no more than 63 characters/);
    expect(() => parseLabelSelector("-bad=x")).toThrow(/name part must consist of/);
    expect(parseLabelSelector("example.com/app in (a,b),!tier")).toHaveLength(2);
  });
});

describe("patches cannot pollute or explode", () => {
  it("refuses JSON pointers through __proto__, constructor and prototype", () => {
    for (const path of ["/__proto__/polluted", "/constructor/prototype/polluted", "/a/prototype"]) {
      expect(() => jsonPatch({ a: {} }, [{ op: "add", path, value: 1 }])).toThrow(PatchError);
      expect(() => jsonPatch({ a: {} }, [{ op: "copy", from: path, path: "/b" }])).toThrow(PatchError);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("ignores __proto__ keys in merge and strategic merge patches", () => {
    const patch = JSON.parse(
      '{"__proto__":{"polluted":1},"a":{"__proto__":{"polluted":2},"b":1}}',
    ) as unknown;
    for (const apply of [mergePatch, strategicMerge]) {
      const out = apply({ a: {} }, patch) as Record<string, Record<string, unknown>>;
      expect(out.a!.b).toBe(1);
      expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
      expect(Object.getPrototypeOf(out.a)).toBe(Object.prototype);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    }
  });

  it("counts operations and bounds the result's size", () => {
    const ops = Array.from({ length: MAX_JSON_PATCH_OPERATIONS + 1 }, () => ({
      op: "test",
      path: "/a",
      value: 1,
    }));
    expect(() => jsonPatch({ a: 1 }, ops)).toThrow(
      "The allowed maximum operations in a JSON patch is 10000, got 10001",
    );
    expect(() => jsonPatch({ a: 1 }, ops.slice(1))).not.toThrow();
    const doubling = [{ op: "add", path: "/v", value: "x".repeat(64 * 1024) }];
    for (let i = 0; i < 11; i++) doubling.push({ op: "copy", from: "", path: `/c${i}` } as never);
    const err = (() => {
      try {
        jsonPatch({}, doubling, 1024 * 1024);
      } catch (e) {
        return e as PatchError;
      }
    })();
    expect(err?.code).toBe(413);
    // Replacing a value over and over stays small: removals count too.
    const churn = Array.from({ length: 5000 }, (_, i) => ({
      op: "replace",
      path: "/v",
      value: "y".repeat(500 + (i % 2)),
    }));
    expect(() => jsonPatch({ v: "" }, churn, 10_000)).not.toThrow();
    expect(() => jsonPatch({}, [{ op: "move", from: 5, path: "/a" }])).toThrow(/needs a "from" string/);
  });
});

describe("read paths meeting values of the wrong type", () => {
  const weird = { toString: 1 };
  it("table printers render or skip them", () => {
    const node = {
      metadata: { name: "n", creationTimestamp: weird, labels: weird },
      status: { nodeInfo: { kubeletVersion: weird }, conditions: weird },
    };
    const t = toTable("Node", [node]);
    expect(t.rows[0]!.cells[0]).toBe("n");
    for (const kind of [
      "Pod",
      "Service",
      "Deployment",
      "ReplicaSet",
      "Event",
      "Endpoints",
      "Lease",
      "Secret",
    ]) {
      expect(() =>
        toTable(kind, [
          { metadata: { name: "x" }, spec: weird, status: weird, involvedObject: weird, subsets: [weird] },
        ]),
      ).not.toThrow();
      expect(() =>
        toTable(kind, [
          { metadata: { name: weird }, spec: { ports: [{ port: weird }], selector: { a: weird } } },
        ]),
      ).not.toThrow();
    }
  });

  it("selectors treat them as not matching, never throw", () => {
    const ev = { involvedObject: { name: weird }, metadata: { labels: { a: weird } } };
    expect(matchesFields([{ field: "involvedObject.name", op: "=", value: "x" }], ev)).toBe(false);
    expect(matchesFields([{ field: "involvedObject.name", op: "!=", value: "x" }], ev)).toBe(true);
    expect(matchesLabels([{ key: "a", op: "in", values: ["x"] }], ev.metadata.labels as never)).toBe(false);
    expect(matchesLabels([{ key: "a", op: "exists" }], weird as never)).toBe(false);
    expect(selectorObjectToString({ matchLabels: weird, matchExpressions: weird } as never)).toBe("");
    expect(
      selectorObjectToString({
        matchExpressions: [weird, { key: "k", operator: weird }, { key: "k", operator: "Exists" }],
      } as never),
    ).toBe("k");
  });

  it("the Node authorizer's graph reads pods of any shape", () => {
    expect(() =>
      podReferences({ spec: { volumes: weird, containers: [weird, { env: weird }] } }),
    ).not.toThrow();
    const refs = podReferences({
      metadata: { name: "p" },
      spec: {
        volumes: [
          { name: "v", secret: { secretName: "s" } },
          { name: "e", ephemeral: {} },
          { projected: { sources: [{ configMap: { name: "c" } }] } },
        ],
        containers: [{ envFrom: [{ secretRef: { name: "s2" } }] }],
        imagePullSecrets: [{ name: "pull" }],
      },
    });
    expect([...refs.Secret].sort()).toEqual(["pull", "s", "s2"]);
    expect([...refs.ConfigMap]).toEqual(["c"]);
    expect([...refs.PersistentVolumeClaim]).toEqual(["p-e"]);
    expect([...refs.ServiceAccount]).toEqual(["default"]);
  });
});

describe("guaranteedUpdate", () => {
  const conflictErr = () => Object.assign(new Error("conflict"), { reason: "Conflict" });
  it("retries a conflicting write on a fresh read, up to its attempts", async () => {
    let reads = 0;
    let writes = 0;
    const out = await guaranteedUpdate(
      async () => ++reads,
      async (n) => {
        writes++;
        if (n < 3) throw conflictErr();
        return n;
      },
      { retry: true },
    );
    expect([out, reads, writes]).toEqual([3, 3, 3]);
    await expect(
      guaranteedUpdate(
        async () => 1,
        async () => Promise.reject(conflictErr()),
        { retry: true, attempts: 2, exhausted: () => new Error("gave up") },
      ),
    ).rejects.toThrow("gave up");
    let once = 0;
    await expect(
      guaranteedUpdate(
        async () => once++,
        async () => Promise.reject(conflictErr()),
        { retry: false },
      ),
    ).rejects.toThrow("conflict");
    expect(once).toBe(1);
  });
});
