/**
 * The service proxy's ruleset applied with `nft -f` inside a test network namespace, with three
 * busybox httpd "endpoints": ClusterIP and NodePort reach only ready endpoints, spread evenly.
 */
import type { V1Endpoints, V1Service } from "@kubernetes/client-node";
import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServiceProxy } from "../../node/proxy/proxy.ts";

const run = promisify(execFile);

describe("service proxy (nftables)", () => {
  const netns = `lab-proxy-${randomBytes(3).toString("hex")}`;
  const enter = ["nsenter", `--net=/run/netns/${netns}`];
  const servers: ChildProcess[] = [];
  let dir: string;
  const proxy = new ServiceProxy(enter);
  const inNs = async (script: string): Promise<string> =>
    (await run(enter[0]!, [...enter.slice(1), "busybox", "sh", "-c", script], { timeout: 60_000 })).stdout;

  const service: V1Service = {
    metadata: { name: "web", namespace: "default" },
    spec: {
      type: "NodePort",
      clusterIP: "10.96.0.20",
      ports: [{ name: "http", port: 80, nodePort: 30080, protocol: "TCP" }],
    },
  };
  const endpoints = (ready: string[], notReady: string[]): V1Endpoints => ({
    metadata: { name: "web", namespace: "default" },
    subsets: [
      {
        addresses: ready.map((ip) => ({ ip })),
        notReadyAddresses: notReady.map((ip) => ({ ip })),
        ports: [{ name: "http", port: 8080, protocol: "TCP" }],
      },
    ],
  });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "lab-proxy-"));
    await run("ip", ["netns", "add", netns]);
    await run("ip", ["-n", netns, "link", "set", "lo", "up"]);
    await run("ip", ["-n", netns, "link", "add", "pods", "type", "bridge"]);
    await run("ip", ["-n", netns, "link", "set", "pods", "up"]);
    await run("ip", ["-n", netns, "addr", "add", "10.77.0.1/24", "dev", "pods"]);
    // a node routes the service range somewhere (usually its default route): the output hook
    // only sees packets that have a route
    await run("ip", ["-n", netns, "route", "add", "10.96.0.0/12", "dev", "pods"]);
    for (const i of [11, 12, 13]) {
      await run("ip", ["-n", netns, "addr", "add", `10.77.0.${i}/32`, "dev", "pods"]);
      const www = join(dir, `ep${i}`);
      await mkdir(www);
      await writeFile(join(www, "index.html"), `ep-${i}\n`);
      servers.push(
        spawn(
          enter[0]!,
          [...enter.slice(1), "busybox", "httpd", "-f", "-p", `10.77.0.${i}:8080`, "-h", www],
          { stdio: "ignore" },
        ),
      );
    }
    await inNs(
      "for i in 11 12 13; do until busybox wget -qO- http://10.77.0.$i:8080/ >/dev/null 2>&1; do sleep 0.1; done; done",
    );
  });

  afterAll(async () => {
    for (const s of servers) s.kill("SIGKILL");
    await run("ip", ["netns", "del", netns]).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });

  const tally = (out: string): Record<string, number> => {
    const t: Record<string, number> = {};
    for (const l of out.split("\n").filter(Boolean)) t[l] = (t[l] ?? 0) + 1;
    return t;
  };

  it("spreads ClusterIP traffic evenly over ready endpoints only", async () => {
    await proxy.update([service], [endpoints(["10.77.0.11", "10.77.0.12", "10.77.0.13"], [])]);
    // 900 requests: with numgen random, ±20% of even holds at >4 sigma (300 would flake ~4% of runs)
    const t = tally(await inNs("for i in $(seq 900); do busybox wget -qO- http://10.96.0.20/; done"));
    expect(Object.keys(t).sort()).toEqual(["ep-11", "ep-12", "ep-13"]);
    for (const n of Object.values(t)) {
      expect(n).toBeGreaterThanOrEqual(240);
      expect(n).toBeLessThanOrEqual(360);
    }
  });

  it("drops an endpoint that is not ready, within a second, and serves the NodePort", async () => {
    const t0 = Date.now();
    await proxy.update([service], [endpoints(["10.77.0.11", "10.77.0.12"], ["10.77.0.13"])]);
    expect(Date.now() - t0).toBeLessThan(1000);
    const t = tally(await inNs("for i in $(seq 60); do busybox wget -qO- http://10.96.0.20/; done"));
    expect(Object.keys(t).sort()).toEqual(["ep-11", "ep-12"]);
    const np = tally(await inNs("for i in $(seq 30); do busybox wget -qO- http://10.77.0.1:30080/; done"));
    expect(Object.keys(np).every((k) => k === "ep-11" || k === "ep-12")).toBe(true);
    expect(Object.values(np).reduce((a, b) => a + b, 0)).toBe(30);
  });

  it("replaces the ruleset atomically: one table, no leftovers after the service goes", async () => {
    await proxy.update([], []);
    const rules = (await run(enter[0]!, [...enter.slice(1), "nft", "list", "ruleset"])).stdout;
    expect(rules.match(/table ip lab_proxy/g)).toHaveLength(1);
    expect(rules).not.toContain("10.96.0.20");
  });
});
