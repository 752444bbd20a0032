import type { V1Node } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { desiredRoutes, diffRoutes } from "../../../node/routes.ts";

const node = (name: string, podCIDR?: string, ip?: string): V1Node => ({
  metadata: { name },
  spec: podCIDR ? { podCIDR } : {},
  status: ip ? { addresses: [{ type: "InternalIP", address: ip }] } : {},
});

describe("pod routes", () => {
  it("routes every other node's pod CIDR via its InternalIP", () => {
    expect(
      desiredRoutes(
        [
          node("n2", "10.244.2.0/24", "192.168.0.12"),
          node("n1", "10.244.1.0/24", "192.168.0.11"),
          node("n3"),
        ],
        "n1",
      ),
    ).toEqual([{ cidr: "10.244.2.0/24", via: "192.168.0.12" }]);
  });

  it("diffs: changed gateways are replaced, vanished nodes removed, the rest untouched", () => {
    const d = diffRoutes(
      [
        { cidr: "10.244.2.0/24", via: "192.168.0.12" },
        { cidr: "10.244.3.0/24", via: "192.168.0.13" },
        { cidr: "10.244.4.0/24", via: "192.168.0.14" },
      ],
      [
        { cidr: "10.244.2.0/24", via: "192.168.0.12" },
        { cidr: "10.244.3.0/24", via: "192.168.0.99" },
        { cidr: "10.244.5.0/24", via: "192.168.0.15" },
      ],
    );
    expect(d.replace).toEqual([
      { cidr: "10.244.3.0/24", via: "192.168.0.99" },
      { cidr: "10.244.5.0/24", via: "192.168.0.15" },
    ]);
    expect(d.remove).toEqual([{ cidr: "10.244.4.0/24", via: "192.168.0.14" }]);
  });
});
