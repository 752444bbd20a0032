/**
 * `lab kubeconfig` end to end with stock kubectl: the kubeconfig it prints carries the lab CA and the
 * admin client certificate, and kubectl uses them against a TLS server that presents the lab's
 * apiserver certificate and demands a client certificate signed by the lab CA.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execa } from "execa";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { ensurePki } from "../../bootstrap/pki.ts";
import { LabState } from "../../topology/state.ts";
import { labPlan } from "../helpers/lab-plan.ts";

let home: string;
let server: Server;
const seen: string[] = [];

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), "lab-kubeconfig-"));
  const state = new LabState("kc", home);
  await state.ensure();
  await ensurePki(state, labPlan("kc", { network: { cidr: "10.230.0.0/24" } }));
  const pem = (f: string) => readFile(state.path("pki", f), "utf8");
  server = createServer(
    {
      cert: await pem("apiserver.crt"),
      key: await pem("apiserver.key"),
      ca: await pem("ca.crt"),
      requestCert: true,
      rejectUnauthorized: true,
    },
    (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      seen.push(`${peer.subject.CN}/${peer.subject.O}`);
      res.setHeader("content-type", "text/plain");
      res.end("ok");
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  await state.writeJson("endpoint.json", { lab: "kc", server: `https://127.0.0.1:${port}` });
});
afterAll(async () => {
  server?.close();
  await rm(home, { recursive: true, force: true });
});

const lab = (args: string[]) =>
  execa("node", ["bin/lab.js", ...args], { env: { LAB_HOME: home }, reject: false });

describe("lab kubeconfig", () => {
  it("prints a kubeconfig that stock kubectl uses with the admin certificate", async () => {
    const r = await lab(["kubeconfig", "kc"]);
    expect(r.exitCode).toBe(0);
    const doc = parse(r.stdout);
    expect(doc["current-context"]).toBe("lab-admin@lab-kc");
    const file = join(home, "printed");
    await writeFile(file, r.stdout);
    const k = await execa("kubectl", ["--kubeconfig", file, "get", "--raw", "/readyz"], { reject: false });
    expect(k.stderr).toBe("");
    expect(k.stdout).toBe("ok");
    expect(seen).toContain("lab-admin/system:masters");
  });

  it("writes it 0600 with -o, and merges into an existing kubeconfig keeping other entries", async () => {
    const out = join(home, "written");
    expect((await lab(["kubeconfig", "kc", "-o", out])).exitCode).toBe(0);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    const merged = join(home, "config");
    await writeFile(
      merged,
      "apiVersion: v1\nkind: Config\nclusters: [{name: other, cluster: {server: 'https://x:1'}}]\nusers: []\ncontexts: [{name: other, context: {cluster: other, user: u}}]\ncurrent-context: other\n",
    );
    expect((await lab(["kubeconfig", "kc", "--merge", merged])).exitCode).toBe(0);
    expect((await lab(["kubeconfig", "kc", "--merge", merged])).exitCode).toBe(0);
    const doc = parse(await readFile(merged, "utf8"));
    expect(doc.clusters.map((c: { name: string }) => c.name)).toEqual(["other", "lab-kc"]);
    expect(doc["current-context"]).toBe("lab-admin@lab-kc");
    const ctx = await execa("kubectl", ["--kubeconfig", merged, "config", "current-context"]);
    expect(ctx.stdout).toBe("lab-admin@lab-kc");
  });

  it("says what to do for a lab that was never brought up", async () => {
    const r = await lab(["kubeconfig", "nosuchlab"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/lab "nosuchlab" has no admin credentials yet .* \(fix: run `lab up`/);
  });
});
