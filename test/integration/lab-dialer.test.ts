/**
 * The lab dialer and `lab tunnel` against a real jump host: a network namespace stands for a
 * remote hypervisor, with a real sshd (the jump) and, on an address only inside it (127.0.0.2 of
 * the namespace's loopback), an HTTPS server that requires the admin client certificate, like
 * lab-server. The lab host can reach that server only through the jump: the API checks
 * (adminGet) and the tunnel get through, one SSH login serves many requests, and an address that
 * does not answer gives an error that names it and the hypervisor.
 */
import { execa, type ResultPromise } from "execa";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiTunnel, type TunnelEvent } from "../../bootstrap/api-tunnel.ts";
import { labDialer } from "../../ssh/dialer.ts";
import { createCA, issueCertificate } from "../../bootstrap/pki.ts";
import { adminGet } from "../../bootstrap/steps/wait-ready.ts";
import type { Machine } from "../../provisioners/provisioner.ts";
import type { SshJump } from "../../ssh/endpoint.ts";
import { LabState } from "../../topology/state.ts";
import { createTestHosts, type TestHosts } from "../support/ssh-hosts.ts";

let hosts: TestHosts | undefined;
let server: ResultPromise | undefined;
let tls = { ca: "", cert: "", key: "" };
const apiAddress = "127.0.0.2"; // only inside the "hypervisor's" namespace
const deadVip = "127.0.0.3"; // nothing listens there
const apiPort = 20_000 + Math.floor(Math.random() * 10_000);

const jump = (): SshJump => ({
  host: hosts!.hosts[0]!.address,
  port: 22,
  user: "root",
  privateKeyPath: hosts!.clientKeyPath,
  hostKey: hosts!.hosts[0]!.hostPublicKey,
});

const machines = (): Machine[] => [
  {
    name: "master-1",
    role: "master",
    address: apiAddress,
    ssh: {
      host: apiAddress,
      port: 22,
      user: "root",
      privateKeyPath: hosts!.clientKeyPath,
      hostKey: hosts!.hosts[0]!.hostPublicKey,
      jump: jump(),
    },
  },
];

const logins = async () =>
  ((await readFile(join(hosts!.dir, "sshd0.log"), "utf8")).match(/Accepted publickey for root/g) ?? [])
    .length;

const SERVER = `
const https = require("node:https");
const fs = require("node:fs");
const f = (n) => fs.readFileSync(process.env.DIR + "/" + n);
const s = https.createServer(
  { key: f("server.key"), cert: f("server.crt"), ca: f("ca.crt"), requestCert: true, rejectUnauthorized: true },
  (req, res) => res.end(req.url === "/readyz" ? "ok" : JSON.stringify({ kind: "NodeList", items: [] })),
);
s.listen(Number(process.env.PORT), process.env.ADDR, () => console.log("listening"));
`;

beforeAll(async () => {
  hosts = await createTestHosts(1);
  const ca = await createCA("lab-test-ca");
  const srv = await issueCertificate(
    { id: "apiserver", ca: "ca", cn: "lab-server", usages: ["server"], ips: [apiAddress, "127.0.0.1"] },
    ca,
  );
  const admin = await issueCertificate(
    { id: "admin", ca: "ca", cn: "lab-admin", o: ["system:masters"], usages: ["client"] },
    ca,
  );
  tls = { ca: ca.cert, cert: admin.cert, key: admin.key };
  await writeFile(join(hosts.dir, "ca.crt"), ca.cert);
  await writeFile(join(hosts.dir, "server.crt"), srv.cert);
  await writeFile(join(hosts.dir, "server.key"), srv.key, { mode: 0o600 });
  server = execa("ip", ["netns", "exec", hosts.hosts[0]!.netns, process.execPath, "-e", SERVER], {
    env: { DIR: hosts.dir, PORT: String(apiPort), ADDR: apiAddress },
    reject: false,
  });
  await new Promise<void>((resolve, reject) => {
    server!.stdout!.on("data", (d: Buffer) => d.toString().includes("listening") && resolve());
    void server!.then((r) => reject(new Error(`test API server exited: ${r.stderr}`)));
  });
});

afterAll(async () => {
  server?.kill("SIGTERM");
  await server;
  await hosts?.destroy();
});

describe("lab dialer through a jump host", () => {
  it("API checks reach an address only the jump host can reach, over one SSH login", async () => {
    const url = `https://${apiAddress}:${apiPort}/readyz`;
    // Directly, this host's own 127.0.0.2 has no such server.
    await expect(adminGet(tls, url, 3_000)).rejects.toThrow();
    const dialer = labDialer(machines());
    try {
      const before = await logins();
      for (let i = 0; i < 3; i++)
        expect(await adminGet(tls, url, 10_000, dialer)).toEqual({ status: 200, body: "ok" });
      const nodes = await adminGet(tls, `https://${apiAddress}:${apiPort}/api/v1/nodes`, 10_000, dialer);
      expect(JSON.parse(nodes.body)).toMatchObject({ kind: "NodeList" });
      expect((await logins()) - before).toBe(1);
    } finally {
      await dialer.close();
    }
  });

  it("an address that does not answer behind the jump is a clear error naming it and the hypervisor", async () => {
    const dialer = labDialer(machines());
    try {
      const refused = dialer.connect(deadVip, apiPort, { timeoutMs: 10_000 });
      await expect(refused).rejects.toMatchObject({ code: "LAB_NETWORK_UNREACHABLE" });
      await expect(refused).rejects.toThrow(
        `cannot reach ${deadVip}:${apiPort} through the hypervisor root@${jump().host}:22`,
      );
      // No route inside the namespace: the jump host says so at once, nothing leaves it.
      const t0 = Date.now();
      await expect(dialer.connect("10.254.254.254", 6443, { timeoutMs: 10_000 })).rejects.toThrow(
        /cannot reach 10\.254\.254\.254:6443 through the hypervisor/,
      );
      expect(Date.now() - t0).toBeLessThan(10_000);
      // adminGet surfaces the same message.
      await expect(adminGet(tls, `https://${deadVip}:${apiPort}/readyz`, 10_000, dialer)).rejects.toThrow(
        /cannot reach 127\.0\.0\.3/,
      );
    } finally {
      await dialer.close();
    }
  });
});

function getThroughTunnel(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `https://127.0.0.1:${port}${path}`,
      { ...tls, timeout: 15_000, agent: false },
      (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

describe("lab tunnel", () => {
  it("forwards 127.0.0.1 to the first API endpoint that answers (a dead VIP first), TLS end to end", async () => {
    const dialer = labDialer(machines());
    const events: TunnelEvent[] = [];
    const tunnel = await startApiTunnel({
      dialer,
      targets: [
        { host: deadVip, port: apiPort },
        { host: apiAddress, port: apiPort },
      ],
      listen: { port: 0 },
      onEvent: (e) => events.push(e),
    });
    try {
      // The server's certificate names 127.0.0.1, so https to the tunnel verifies as usual; one
      // connection per request (no keep-alive), each forwarded on its own.
      expect(await getThroughTunnel(tunnel.port, "/readyz")).toEqual({ status: 200, body: "ok" });
      expect(await getThroughTunnel(tunnel.port, "/readyz")).toEqual({ status: 200, body: "ok" });
      const connected = events.filter((e) => e.type === "connected");
      expect(connected.map((e) => e.type === "connected" && e.target)).toEqual([
        `${apiAddress}:${apiPort}`,
        `${apiAddress}:${apiPort}`,
      ]);
    } finally {
      await tunnel.close();
      await dialer.close();
    }
  });

  it("when no endpoint answers, the client's connection is closed and the tunnel says why", async () => {
    const dialer = labDialer(machines());
    const events: TunnelEvent[] = [];
    const tunnel = await startApiTunnel({
      dialer,
      targets: [{ host: deadVip, port: apiPort }],
      listen: { port: 0 },
      onEvent: (e) => events.push(e),
    });
    try {
      await expect(getThroughTunnel(tunnel.port, "/readyz")).rejects.toThrow();
      expect(events).toEqual([
        {
          type: "failed",
          error: expect.stringMatching(
            /no API endpoint answered: cannot reach 127\.0\.0\.3:\d+ through the hypervisor/,
          ),
        },
      ]);
    } finally {
      await tunnel.close();
      await dialer.close();
    }
  });
});

describe("lab tunnel and lab kubeconfig (the CLI) with stock kubectl", () => {
  it("kubectl reaches the API behind the jump through the tunnel the kubeconfig points at", async () => {
    // A lab's state as `lab up` leaves it: plan, machines (behind the jump), admin credentials.
    const home = join(hosts!.dir, "lab-home");
    const state = new LabState("tnl", home);
    await state.ensure();
    await state.writeJson("plan.json", {
      lab: "tnl",
      provider: { type: "libvirt" },
      network: { vip: deadVip },
      cluster: { apiServerPort: apiPort },
      masters: [{ name: "master-1", address: apiAddress }],
      nodes: [{ name: "master-1", role: "master", address: apiAddress }],
    });
    await state.writeJson("machines.json", machines());
    await mkdir(state.path("pki"), { recursive: true });
    await writeFile(state.path("pki", "ca.crt"), tls.ca);
    await writeFile(state.path("pki", "admin.crt"), tls.cert);
    await writeFile(state.path("pki", "admin.key"), tls.key, { mode: 0o600 });
    const env = { ...process.env, LAB_HOME: home };
    const lab = (args: string[]) => execa(process.execPath, ["bin/lab.js", ...args], { env, reject: false });
    const tunnel = execa(process.execPath, ["bin/lab.js", "--json", "tunnel", "tnl", "--port", "0"], {
      env,
      reject: false,
    });
    try {
      const first = await new Promise<string>((resolve, reject) => {
        let buf = "";
        tunnel.stdout!.on("data", (d: Buffer) => {
          buf += d.toString();
          if (buf.includes("\n")) resolve(buf.slice(0, buf.indexOf("\n")));
        });
        void tunnel.then((r) => reject(new Error(`lab tunnel exited ${r.exitCode}: ${r.stderr}`)));
      });
      const t = JSON.parse(first) as { port: number; server: string; targets: string[]; via: string };
      expect(t).toMatchObject({
        server: `https://127.0.0.1:${t.port}`,
        targets: [`${deadVip}:${apiPort}`, `${apiAddress}:${apiPort}`],
        via: `root@${jump().host}:22`,
      });
      const file = join(home, "kubeconfig");
      const kc = await lab(["--json", "kubeconfig", "tnl", "-o", file]);
      expect(kc.exitCode).toBe(0);
      expect(JSON.parse(kc.stdout)).toMatchObject({ server: t.server, tunnel: { port: t.port } });
      const k = await execa("kubectl", ["--kubeconfig", file, "get", "--raw", "/readyz"], { reject: false });
      expect(k.stderr).toBe("");
      expect(k.stdout).toBe("ok");
    } finally {
      tunnel.kill("SIGINT");
    }
    expect((await tunnel).exitCode).toBe(0);
  });
});
