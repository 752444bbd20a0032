/**
 * The API VIP's failover without VMs: three network namespaces on one bridge, each a "master" running
 * the real keepalived with the configuration and /readyz check lab renders (templates/keepalived.ts),
 * and a tiny HTTPS /readyz responder standing in for lab-server. Killing the responder on the master
 * that holds the VIP moves the VIP to another master within 10 s; stopping it (SIGSTOP: connections
 * still accepted, never answered) within 5 s, and keepalived never skips an overlapping check run.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execa, type ResultPromise } from "execa";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { renderKeepalivedConf, renderReadyzCheck } from "../../templates/keepalived.ts";
import { labServerHealthPort } from "../../templates/lab-server.ts";

const sfx = randomBytes(2).toString("hex");
const hub = `lkf-${sfx}-hub`;
const masters = [1, 2, 3].map((i) => ({ i, ns: `lkf-${sfx}-m${i}` }));
// A /24 from a random octet in 10.250.x: never one of the lab subnets the planner derives.
const net = `10.250.${(parseInt(sfx, 16) % 250) + 1}`;
const vip = `${net}.10`;
const address = (i: number) => `${net}.${10 + i}`;
const port = 16443;
let dir = "";
const responders = new Map<number, ResultPromise>();
const daemons: ResultPromise[] = [];
/** Every line keepalived logged (--log-console), per master. */
const logs = new Map<number, string[]>();

const ip = (...args: string[]) => execa("ip", args);
const inNs = (ns: string, cmd: string[], opts: { input?: string } = {}) =>
  execa("ip", ["netns", "exec", ns, ...cmd], { timeout: 5_000, ...opts });

/** A stand-in for lab-server: HTTPS on the API port, plain-HTTP health port on 127.0.0.1; 200 on /readyz. */
function startResponder(i: number): void {
  const handler = `(q, r) => { r.writeHead(q.url === "/readyz" ? 200 : 404); r.end("master-${i}"); }`;
  const script = `require("https").createServer({key: require("fs").readFileSync(${JSON.stringify(join(dir, "key.pem"))}), cert: require("fs").readFileSync(${JSON.stringify(join(dir, "cert.pem"))})}, ${handler}).listen(${port}); require("http").createServer(${handler}).listen(${labServerHealthPort(port)}, "127.0.0.1");`;
  const p = execa("ip", ["netns", "exec", masters[i - 1]!.ns, process.execPath, "-e", script], {
    reject: false,
  });
  responders.set(i, p);
}

async function holders(): Promise<number[]> {
  const out: number[] = [];
  for (const m of masters) {
    const r = await execa("ip", ["-n", m.ns, "-4", "-o", "addr", "show", "dev", "eth0"], { reject: false });
    if (r.stdout.includes(` ${vip}/`)) out.push(m.i);
  }
  return out;
}

/** Which master's responder answers https://VIP/readyz, asked from inside `ns`. */
async function viaVip(ns: string): Promise<string> {
  const r = await inNs(ns, ["openssl", "s_client", "-quiet", "-connect", `${vip}:${port}`], {
    input: `GET /readyz HTTP/1.1\r\nHost: ${vip}\r\nConnection: close\r\n\r\n`,
  });
  return /master-\d/.exec(r.stdout)?.[0] ?? r.stdout;
}

async function until<T>(timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T | undefined> {
  const started = Date.now();
  for (;;) {
    const v = await fn();
    if (v !== undefined || Date.now() - started > timeoutMs) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  // Not under /tmp: keepalived's script security refuses a check script below a world-writable directory.
  dir = await mkdtemp("/run/lab-keepalived-test-");
  await execa("openssl", [
    ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"],
    ...["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
    ...["-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")],
  ]);
  const check = join(dir, "check-apiserver");
  await writeFile(check, renderReadyzCheck(labServerHealthPort(port)), { mode: 0o755 });

  await ip("netns", "add", hub);
  await ip("-n", hub, "link", "add", "br0", "type", "bridge");
  await ip("-n", hub, "link", "set", "br0", "up");
  for (const m of masters) {
    await ip("netns", "add", m.ns);
    await ip("-n", m.ns, "link", "set", "lo", "up");
    await ip("-n", m.ns, "link", "add", "eth0", "type", "veth", "peer", "name", `p${m.i}`, "netns", hub);
    await ip("-n", hub, "link", "set", `p${m.i}`, "master", "br0", "up");
    await ip("-n", m.ns, "addr", "add", `${address(m.i)}/24`, "dev", "eth0");
    await ip("-n", m.ns, "link", "set", "eth0", "up");
    startResponder(m.i);
    const conf = renderKeepalivedConf({
      name: `master-${m.i}`,
      address: address(m.i),
      peers: masters.filter((o) => o.i !== m.i).map((o) => address(o.i)),
      iface: "eth0",
      vip,
      prefix: 24,
      virtualRouterId: 51,
      priority: 150 - (m.i - 1) * 10,
      apiServerPort: port,
      checkScript: check,
    });
    const file = join(dir, `keepalived-${m.i}.conf`);
    await writeFile(file, conf);
    const pid = (what: string) => join(dir, `${what}-${m.i}.pid`);
    const d = execa(
      "ip",
      [
        ...["netns", "exec", m.ns, "keepalived", "--dont-fork", "--log-console", "--use-file", file],
        ...["--pid", pid("ka"), "--vrrp_pid", pid("vrrp"), "--checkers_pid", pid("chk")],
      ],
      { reject: false, all: true },
    );
    const lines: string[] = [];
    logs.set(m.i, lines);
    d.all!.on("data", (b: Buffer) => lines.push(...b.toString().split("\n").filter(Boolean)));
    daemons.push(d);
  }
}, 60_000);

afterAll(async () => {
  for (const p of responders.values()) p.kill("SIGCONT");
  for (const p of [...daemons, ...responders.values()]) p.kill("SIGTERM");
  await Promise.allSettled([...daemons, ...responders.values()]);
  for (const ns of [...masters.map((m) => m.ns), hub])
    await execa("ip", ["netns", "del", ns], { reject: false });
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("keepalived VIP among three masters (network namespaces, rendered config)", () => {
  it("holds the VIP on exactly one healthy master and moves it within 10 s when that master's apiserver stops", async () => {
    const first = await until(30_000, async () => {
      const h = await holders();
      return h.length === 1 ? h[0] : undefined;
    });
    expect(first, "one master should hold the VIP").toBeDefined();
    // The "API" answers through the VIP, from another master (the bridge carries it).
    const other = masters.find((m) => m.i !== first)!;
    expect(await viaVip(other.ns)).toBe(`master-${first}`);

    const started = Date.now();
    responders.get(first!)!.kill("SIGKILL");
    const next = await until(15_000, async () => {
      const h = await holders();
      return h.length === 1 && h[0] !== first ? h[0] : undefined;
    });
    const tookMs = Date.now() - started;
    console.log(`VIP moved from master-${first} to master-${next} in ${tookMs} ms`);
    expect(next, "another master should take the VIP").toBeDefined();
    expect(tookMs).toBeLessThan(10_000);
    expect(await holders()).toEqual([next]);
    expect(await viaVip(masters.find((m) => m.i !== next)!.ns)).toBe(`master-${next}`);
  }, 60_000);

  it("moves the VIP within 5 s when the holder's API stops answering (SIGSTOP), with no overlapping check", async () => {
    const first = await until(30_000, async () => {
      const h = await holders();
      return h.length === 1 ? h[0] : undefined;
    });
    expect(first, "one master should hold the VIP").toBeDefined();
    // Every master's lab-server stand-in answers again (the first case killed one).
    for (const m of masters) if (responders.get(m.i)?.exitCode !== null) startResponder(m.i);
    await new Promise((r) => setTimeout(r, 3_000));
    const before = new Map([...logs].map(([i, l]) => [i, l.length]));

    // Stopped, not dead: the kernel still accepts the connection, nothing ever answers.
    const stopped = responders.get(first!)!;
    const started = Date.now();
    stopped.kill("SIGSTOP");
    try {
      const next = await until(14_000, async () => {
        const h = await holders();
        return h.length === 1 && h[0] !== first ? h[0] : undefined;
      });
      const tookMs = Date.now() - started;
      console.log(`VIP left the stopped master-${first} for master-${next} in ${tookMs} ms`);
      expect(next, "another master should take the VIP").toBeDefined();
      expect(tookMs).toBeLessThan(5_000);
      expect(await viaVip(masters.find((m) => m.i !== next)!.ns)).toBe(`master-${next}`);
      // Let the stopped master's check keep failing a while: each run must still end in time.
      await new Promise((r) => setTimeout(r, 4_000));
    } finally {
      stopped.kill("SIGCONT");
    }
    const since = [...logs].flatMap(([i, l]) => l.slice(before.get(i)).map((line) => `master-${i}: ${line}`));
    expect(since.some((l) => l.includes(`master-${first}`) && /apiserver_ready/.test(l))).toBe(true);
    expect(since.filter((l) => /already running|skipping run|timed out/i.test(l))).toEqual([]);
  }, 60_000);
});
