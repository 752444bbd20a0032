import { describe, expect, it } from "vitest";
import {
  hostVethName,
  linkAlias,
  netnsName,
  overlappingRoutes,
  takenSubnets,
  tapName,
} from "../../../../provisioners/network/names.ts";
import { labPlan } from "../../../helpers/lab-plan.ts";

describe("lab network names", () => {
  it("carry the lab's name, and fit Linux's 15-character interface names", () => {
    expect(netnsName("demo")).toBe("lab-demo");
    expect(linkAlias("demo")).toBe("lab:demo");
    const longest = hostVethName("a-twenty-char-name-x");
    expect(longest.length).toBeLessThanOrEqual(15);
    expect(hostVethName("demo")).not.toBe(hostVethName("demo2"));
    expect(tapName(3)).toBe("tap3");
  });

  it("agree with the planner's names", () => {
    const p = labPlan("demo");
    expect(p.network.netns).toBe(netnsName("demo"));
    expect(p.network.hostVeth).toBe(hostVethName("demo"));
  });
});

describe("route overlap", () => {
  const routes = [
    { dst: "default", dev: "eth0" },
    { dst: "192.0.2.0/24", dev: "eth0" },
    { dst: "10.0.0.0/8", dev: "wg0" },
    { dst: "10.200.5.0/24", dev: hostVethName("demo") },
    { dst: "172.16.1.5", dev: "tun0" },
  ];

  it("finds host routes that overlap the lab subnet", () => {
    expect(overlappingRoutes("10.200.7.0/24", routes, hostVethName("demo")).map((r) => r.dst)).toEqual([
      "10.0.0.0/8",
    ]);
    expect(overlappingRoutes("172.16.1.0/24", routes, hostVethName("demo")).map((r) => r.dst)).toEqual([
      "172.16.1.5",
    ]);
    expect(overlappingRoutes("192.168.50.0/24", routes, hostVethName("demo"))).toEqual([]);
  });

  it("ignores the default route and the lab's own link (its route exists after a first up)", () => {
    expect(
      overlappingRoutes("10.200.5.0/24", routes.slice(0, 2).concat(routes[3]!), hostVethName("demo")),
    ).toEqual([]);
  });

  it("hands the planner every other route as taken", () => {
    expect(takenSubnets(routes, hostVethName("demo"))).toEqual([
      "192.0.2.0/24",
      "10.0.0.0/8",
      "172.16.1.5/32",
    ]);
  });
});
