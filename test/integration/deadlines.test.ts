/**
 * Deadlines that hold when the peer never answers. Servers on loopback that accept the TCP
 * connection (and complete TLS) but never answer: the lab host's API checks (adminGet, through the
 * lab dialer or not), the wait-ready step, the API client (api/client.ts) and SSH (ssh-ready, the
 * bootstrap's sessions) all fail inside their deadline plus a small margin, naming what is stuck.
 * `lab up` once sat 6 min 40 s in wait-ready against a 300 s limit on exactly such a socket.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LabClient } from "../../api/client.ts";
import { labDialer } from "../../ssh/dialer.ts";
import { createCA, issueCertificate } from "../../bootstrap/pki.ts";
import { SshSession } from "../../ssh/session.ts";
import type { StepContext } from "../../bootstrap/steps/context.ts";
import { adminGet, waitReadyStep } from "../../bootstrap/steps/wait-ready.ts";
import { generateEd25519 } from "../../provisioners/keys.ts";
import { waitSshReady } from "../../ssh/ready.ts";
import type { LabError } from "../../topology/errors.ts";
import { plan } from "../../topology/plan.ts";
import { silentReporter } from "../../topology/progress.ts";
import { LabFile } from "../../topology/schema.ts";

/** How late past its deadline a call may end: timers, a TLS teardown, a loaded 2-core host. */
const MARGIN_MS = 1_500;

let dir = "";
let tls = { ca: "", cert: "", key: "" };
const held: Socket[] = [];
let tcpHold: Server; // accepts TCP, never says a word (not TLS, not SSH)
let tlsHold: HttpsServer; // completes TLS, reads the request, never answers
let trickle: HttpsServer; // answers 200 and then sends one byte every 200 ms, forever
const port = (s: Server) => (s.address() as { port: number }).port;
let keyPath = "";
let hostKey = "";

const listen = <S extends Server>(s: S) =>
  new Promise<S>((resolve) => s.listen(0, "127.0.0.1", () => resolve(s)));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lab-deadlines-"));
  const ca = await createCA("lab-test-ca");
  const srv = await issueCertificate(
    { id: "apiserver", ca: "ca", cn: "lab-server", usages: ["server"], ips: ["127.0.0.1"] },
    ca,
  );
  const admin = await issueCertificate(
    { id: "admin", ca: "ca", cn: "lab-admin", o: ["system:masters"], usages: ["client"] },
    ca,
  );
  tls = { ca: ca.cert, cert: admin.cert, key: admin.key };
  await writeFile(join(dir, "ca.crt"), ca.cert);
  await writeFile(join(dir, "admin.crt"), admin.cert);
  await writeFile(join(dir, "admin.key"), admin.key);
  const key = await generateEd25519("test");
  keyPath = join(dir, "id");
  await writeFile(keyPath, key.privateKey, { mode: 0o600 });
  hostKey = key.publicKey;
  tcpHold = await listen(createServer((s) => held.push(s.on("error", () => undefined))));
  const opts = { key: srv.key, cert: srv.cert, ca: ca.cert, requestCert: true };
  tlsHold = await listen(createHttpsServer(opts, () => undefined));
  trickle = await listen(
    createHttpsServer(opts, (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      const t = setInterval(() => res.write(" "), 200);
      res.on("close", () => clearInterval(t));
    }),
  );
  for (const s of [tlsHold, trickle])
    s.on("connection", (c: Socket) => held.push(c.on("error", () => undefined)));
});

afterAll(async () => {
  for (const s of held) s.destroy();
  await Promise.all([tcpHold, tlsHold, trickle].map((s) => new Promise((r) => s?.close(r))));
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Runs `fn`, expects it to reject; returns the error and how long it took. */
async function timed(fn: () => Promise<unknown>): Promise<{ err: Error; ms: number }> {
  const t0 = Date.now();
  const err = await fn().then(
    () => new Error("resolved, expected a rejection"),
    (e: unknown) => e as Error,
  );
  return { err, ms: Date.now() - t0 };
}

describe("a peer that holds the socket open and never answers", () => {
  it("adminGet over TLS ends at its deadline, directly and through the lab dialer", async () => {
    const url = `https://127.0.0.1:${port(tlsHold)}/readyz`;
    const direct = await timed(() => adminGet(tls, url, 1_000));
    expect(direct.ms).toBeLessThan(1_000 + MARGIN_MS);
    expect(direct.ms).toBeGreaterThanOrEqual(950);
    expect(direct.err.message).toBe(`no answer from ${url} within 1000 ms`);

    const dialer = labDialer([]);
    try {
      const via = await timed(() => adminGet(tls, url, 1_000, dialer));
      expect(via.ms).toBeLessThan(1_000 + MARGIN_MS);
      expect(via.err.message).toBe(`no answer from ${url} within 1000 ms`);
    } finally {
      await dialer.close();
    }
  });

  it("the dialer's TLS handshake ends at its deadline when the peer never speaks TLS", async () => {
    const dialer = labDialer([]);
    try {
      const url = `https://127.0.0.1:${port(tcpHold)}/readyz`;
      const r = await timed(() => adminGet(tls, url, 1_000, dialer));
      expect(r.ms).toBeLessThan(1_000 + MARGIN_MS);
      // Either the handshake's own bound or the request's: both name where it stopped.
      expect(r.err.message).toMatch(
        new RegExp(
          `(127\\.0\\.0\\.1:${port(tcpHold)} accepted the connection but finished no TLS handshake|no answer from ${url.replace(/\./g, "\\.")})`,
        ),
      );
    } finally {
      await dialer.close();
    }
  });

  it("a body that trickles forever still ends at the request's deadline", async () => {
    const url = `https://127.0.0.1:${port(trickle)}/api/v1/nodes`;
    const r = await timed(() => adminGet(tls, url, 1_200));
    expect(r.ms).toBeLessThan(1_200 + MARGIN_MS);
    expect(r.err.message).toBe(`no answer from ${url} within 1200 ms`);
  });

  it("wait-ready returns inside its deadline, naming the check and what it saw last", async () => {
    const base = plan(
      LabFile.parse({ apiVersion: "lab/v1alpha1", kind: "Lab", metadata: { name: "deadlines" } }),
    );
    // The VIP is this loopback server that takes the TLS connection and never answers.
    const p = {
      ...base,
      network: { ...base.network, vip: "127.0.0.1" },
      cluster: { ...base.cluster, apiServerPort: port(tlsHold) },
    };
    const dialer = labDialer([]);
    const ctx = {
      plan: p,
      state: { path: (...parts: string[]) => join(dir, ...parts.slice(1)) },
      dialer,
      reporter: silentReporter,
    } as unknown as StepContext;
    try {
      const r = await timed(() => waitReadyStep(ctx, 2_500));
      expect(r.ms).toBeLessThan(2_500 + MARGIN_MS);
      const e = r.err as LabError;
      expect(e.code).toBe("NOT_READY_NODES");
      expect(e.what).toMatch(
        new RegExp(
          `^wait-ready: API at https://127\\.0\\.0\\.1:${port(tlsHold)} not answering: no answer within 2500 ms \\(after [234] s\\)$`,
        ),
      );
      expect(e.fix).toMatch(/journalctl -u lab-server/);
    } finally {
      await dialer.close();
    }
  });

  it("the API client (agents, controllers) ends a call at its timeout, also mid-body", async () => {
    for (const s of [tlsHold, trickle]) {
      const c = new LabClient({ server: `https://127.0.0.1:${port(s)}`, ...tls, timeoutMs: 1_000 });
      try {
        const r = await timed(() => c.get("nodes", "worker-1"));
        expect(r.ms).toBeLessThan(1_000 + MARGIN_MS);
        expect(r.err.message).toBe("GET /api/v1/nodes/worker-1: no answer within 1000 ms");
      } finally {
        c.close();
      }
    }
    // A watch's answer must come within the same bound.
    const c = new LabClient({ server: `https://127.0.0.1:${port(tlsHold)}`, ...tls, timeoutMs: 1_000 });
    try {
      const r = await timed(async () => {
        for await (const ev of c.watch("pods", { timeoutSeconds: 60 })) void ev;
      });
      expect(r.ms).toBeLessThan(1_000 + MARGIN_MS);
      expect(r.err.message).toBe("watch pods: no answer within 1000 ms");
    } finally {
      c.close();
    }
  });

  it("ssh-ready to a host that accepts TCP and never speaks SSH fails inside its deadline", async () => {
    const r = await timed(() =>
      waitSshReady(
        {
          node: "master-1",
          host: "127.0.0.1",
          port: port(tcpHold),
          user: "lab",
          privateKeyPath: keyPath,
          hostKey,
        },
        { timeoutMs: 2_000, intervalMs: 200 },
      ),
    );
    expect(r.ms).toBeLessThan(2_000 + MARGIN_MS);
    const e = r.err as LabError;
    expect(e.code).toBe("NOT_READY_SSH");
    expect(e.what).toMatch(
      new RegExp(
        `^readiness check ssh-ready failed for node master-1: lab@127\\.0\\.0\\.1:${port(tcpHold)} not reachable after 2 s \\(last error: no answer within 2000 ms\\)$`,
      ),
    );
  });

  it("an SSH session to such a host fails at its connect timeout", async () => {
    const r = await timed(() =>
      SshSession.connect(
        {
          name: "worker-1",
          role: "worker",
          address: "127.0.0.1",
          ssh: { host: "127.0.0.1", port: port(tcpHold), user: "lab", privateKeyPath: keyPath, hostKey },
        },
        { timeoutMs: 1_000 },
      ),
    );
    expect(r.ms).toBeLessThan(1_000 + MARGIN_MS);
    expect(r.err.message).toMatch(
      /cannot connect to worker-1 \(lab@127\.0\.0\.1:\d+\): Timed out while waiting for handshake/,
    );
  });
});
