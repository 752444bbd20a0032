import { describe, expect, it } from "vitest";
import { apiTargets, defaultTunnelPort } from "../../../bootstrap/api-tunnel.ts";
import { apiBehindJump, jumpFor } from "../../../ssh/dialer.ts";
import type { Machine } from "../../../provisioners/provisioner.ts";
import type { SshJump } from "../../../ssh/endpoint.ts";

const hv = (host: string): SshJump => ({
  host,
  port: 22,
  user: "root",
  privateKeyPath: "/k",
  hostKey: "SHA256:x",
});
const machine = (name: string, role: Machine["role"], address: string, jump?: SshJump): Machine => ({
  name,
  role,
  address,
  ssh: {
    host: address,
    port: 22,
    user: "lab",
    privateKeyPath: "/k",
    hostKey: "SHA256:y",
    ...(jump ? { jump } : {}),
  },
});

describe("jumpFor: which jump reaches an address on the lab network", () => {
  it("a node's address through that node's own jump; none for a local node", () => {
    const ms = [
      machine("master-1", "master", "10.0.0.11"),
      machine("worker-1", "worker", "10.0.0.21", hv("hv2")),
    ];
    expect(jumpFor(ms, "10.0.0.21")).toEqual(hv("hv2"));
    expect(jumpFor(ms, "10.0.0.11")).toBeUndefined();
  });

  it("the VIP through the first master's jump when every master is behind one", () => {
    const ms = [
      machine("master-1", "master", "10.0.0.11", hv("hv1")),
      machine("master-2", "master", "10.0.0.12", hv("hv2")),
      machine("worker-1", "worker", "10.0.0.21"),
    ];
    expect(jumpFor(ms, "10.0.0.10")).toEqual(hv("hv1"));
    expect(apiBehindJump(ms, "10.0.0.10")).toBe(true);
  });

  it("the VIP directly when a master is on this host's network (several hypervisors on one LAN)", () => {
    const ms = [
      machine("master-1", "master", "10.0.0.11"),
      machine("master-2", "master", "10.0.0.12", hv("hv2")),
    ];
    expect(jumpFor(ms, "10.0.0.10")).toBeUndefined();
    expect(apiBehindJump(ms, "10.0.0.10")).toBe(false);
  });
});

describe("apiTargets and the tunnel port", () => {
  it("tries the VIP first, then every master, each once", () => {
    const plan = {
      network: { vip: "10.0.0.10" },
      cluster: { apiServerPort: 6443 },
      masters: [{ address: "10.0.0.11" }, { address: "10.0.0.12" }],
    };
    expect(apiTargets(plan).map((t) => `${t.host}:${t.port}`)).toEqual([
      "10.0.0.10:6443",
      "10.0.0.11:6443",
      "10.0.0.12:6443",
    ]);
    // One master whose address is the endpoint: one target.
    expect(
      apiTargets({ ...plan, network: { vip: "10.0.0.11" }, masters: [{ address: "10.0.0.11" }] }),
    ).toEqual([{ host: "10.0.0.11", port: 6443 }]);
  });

  it("the default tunnel port is stable per lab and in 16443-17442", () => {
    expect(defaultTunnelPort("demo")).toBe(defaultTunnelPort("demo"));
    for (const n of ["a", "demo", "lv", "remote9"]) {
      expect(defaultTunnelPort(n)).toBeGreaterThanOrEqual(16443);
      expect(defaultTunnelPort(n)).toBeLessThanOrEqual(17442);
    }
    expect(new Set(["a", "b", "c", "d", "e"].map(defaultTunnelPort)).size).toBeGreaterThan(1);
  });
});
