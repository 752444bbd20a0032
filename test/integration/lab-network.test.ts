/**
 * The lab network for real: namespace, bridge, taps and the host veth with the gateway address;
 * refusal of a subnet the host already routes; and nothing left behind after destroy.
 */
import { existsSync } from "node:fs";
import { connect } from "node:net";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import {
  destroyLabNetwork,
  ensureLabNetwork,
  ensureTap,
  labHostLinks,
} from "../../provisioners/network/netns.ts";
import { hostVethName, netnsName } from "../../provisioners/network/names.ts";

const lab = `nt${process.pid}`;
const other = `nt${process.pid}x`;
const dummy = `ltd${process.pid}`.slice(0, 15);
// Test subnets outside the planner's 10.200.0.0/13 pool, picked per process to avoid clashes.
const octet = 100 + (process.pid % 100);
const cidr = `10.254.${octet}.0/24`;
const busy = `10.253.${octet}.0/24`;

/** Serves one line from inside the namespace and reads it from the host over the lab network. */
async function tcpHelloFromNetns(ns: string, address: string): Promise<string> {
  const port = 20000 + (process.pid % 20000);
  const server = execa("ip", [
    "netns",
    "exec",
    ns,
    process.execPath,
    "-e",
    `require("net").createServer((s) => s.end("hello from the lab bridge")).listen(${port}, "${address}", () => console.log("listening"))`,
  ]);
  try {
    await new Promise<void>((resolve, reject) => {
      server.stdout!.once("data", () => resolve());
      server.catch(reject);
    });
    return await new Promise<string>((resolve, reject) => {
      const c = connect(port, address);
      let data = "";
      c.on("data", (d) => (data += d.toString()));
      c.on("end", () => resolve(data));
      c.on("error", reject);
      c.setTimeout(5000, () => reject(new Error("timeout")));
    });
  } finally {
    server.kill();
    await server.catch(() => undefined);
  }
}

async function links(): Promise<{ ifname: string; ifalias?: string }[]> {
  return JSON.parse((await execa("ip", ["-j", "link", "show"])).stdout);
}

afterAll(async () => {
  await destroyLabNetwork(lab).catch(() => undefined);
  await destroyLabNetwork(other).catch(() => undefined);
  await execa("ip", ["link", "del", dummy], { reject: false });
});

describe("lab network namespace", () => {
  it("creates namespace, bridge, taps and a host veth carrying the gateway; twice is fine", async () => {
    const spec = { lab, cidr, prefix: 24, gateway: `10.254.${octet}.1` };
    await ensureLabNetwork(spec);
    await ensureLabNetwork(spec); // idempotent
    expect(existsSync(`/run/netns/${netnsName(lab)}`)).toBe(true);
    expect(await ensureTap(lab, 0)).toBe("tap0");
    expect(await ensureTap(lab, 1)).toBe("tap1");
    await ensureTap(lab, 1);
    const inside = JSON.parse((await execa("ip", ["-n", netnsName(lab), "-j", "link", "show"])).stdout) as {
      ifname: string;
      master?: string;
    }[];
    expect(
      inside
        .filter((l) => l.master === "br0")
        .map((l) => l.ifname)
        .sort(),
    ).toEqual(["tap0", "tap1", "uplink0"]);
    const veth = (await links()).find((l) => l.ifname === hostVethName(lab));
    expect(veth?.ifalias).toBe(`lab:${lab}`);
    const addr = (await execa("ip", ["-4", "-br", "addr", "show", "dev", hostVethName(lab)])).stdout;
    expect(addr).toContain(`10.254.${octet}.1/24`);
    // Something on the lab bridge is reachable from the host through the veth (as a VM would be).
    await execa("ip", ["-n", netnsName(lab), "addr", "add", `10.254.${octet}.11/24`, "dev", "br0"]);
    expect(await tcpHelloFromNetns(netnsName(lab), `10.254.${octet}.11`)).toBe("hello from the lab bridge");
  });

  it("refuses a lab subnet that overlaps an existing host route, creating nothing", async () => {
    // A veth pair stands in for any interface that routes the subnet (no dummy module here).
    await execa("ip", ["link", "add", dummy, "type", "veth", "peer", "name", `${dummy}p`]);
    await execa("ip", ["addr", "add", `10.253.${octet}.1/24`, "dev", dummy]);
    await execa("ip", ["link", "set", dummy, "up"]);
    await execa("ip", ["link", "set", `${dummy}p`, "up"]);
    await expect(
      ensureLabNetwork({ lab: other, cidr: busy, prefix: 24, gateway: `10.253.${octet}.1` }),
    ).rejects.toMatchObject({ code: "NETWORK_OVERLAP", what: expect.stringContaining(`dev ${dummy}`) });
    expect(existsSync(`/run/netns/${netnsName(other)}`)).toBe(false);
    expect(await labHostLinks(other)).toEqual([]);
  });

  it("destroy leaves no namespace or host link, and a second destroy is a no-op", async () => {
    await destroyLabNetwork(lab);
    await destroyLabNetwork(lab);
    expect(existsSync(`/run/netns/${netnsName(lab)}`)).toBe(false);
    const left = (await links()).filter((l) => l.ifalias === `lab:${lab}` || l.ifname === hostVethName(lab));
    expect(left).toEqual([]);
    const routes = (await execa("ip", ["-4", "route", "show"])).stdout;
    expect(routes).not.toContain(`10.254.${octet}.0/24`);
  });
});
