/** Pod routes applied with `ip route` inside a test network namespace, then changed and removed. */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROUTE_PROTO, syncRoutes } from "../../node/routes.ts";

const run = promisify(execFile);

describe("pod routes in a netns", () => {
  const netns = `lab-routes-${randomBytes(3).toString("hex")}`;
  const enter = ["nsenter", `--net=/run/netns/${netns}`];
  const routes = async (): Promise<string> => (await run("ip", ["-n", netns, "-4", "route", "show"])).stdout;

  beforeAll(async () => {
    await run("ip", ["netns", "add", netns]);
    await run("ip", ["-n", netns, "link", "add", "nodes", "type", "bridge"]);
    await run("ip", ["-n", netns, "link", "set", "nodes", "up"]);
    await run("ip", ["-n", netns, "addr", "add", "192.168.50.11/24", "dev", "nodes"]);
    // a route someone else owns: the sync must leave it alone
    await run("ip", ["-n", netns, "route", "add", "10.99.0.0/16", "via", "192.168.50.1"]);
  });
  afterAll(async () => {
    await run("ip", ["netns", "del", netns]).catch(() => {});
  });

  it("adds, changes and removes only its own routes", async () => {
    await syncRoutes(
      [
        { cidr: "10.244.2.0/24", via: "192.168.50.12" },
        { cidr: "10.244.3.0/24", via: "192.168.50.13" },
      ],
      enter,
    );
    let r = await routes();
    expect(r).toContain(`10.244.2.0/24 via 192.168.50.12 dev nodes proto ${ROUTE_PROTO}`);
    expect(r).toContain("10.244.3.0/24 via 192.168.50.13");

    await syncRoutes([{ cidr: "10.244.3.0/24", via: "192.168.50.23" }], enter);
    r = await routes();
    expect(r).not.toContain("10.244.2.0/24");
    expect(r).toContain("10.244.3.0/24 via 192.168.50.23");
    expect(r).toContain("10.99.0.0/16 via 192.168.50.1");

    await syncRoutes([], enter);
    expect(await routes()).not.toContain("10.244.");
  });
});
