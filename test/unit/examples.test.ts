import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { checkTopology } from "../../topology/load.ts";
import { plan } from "../../topology/plan.ts";
import { expandHome } from "../../provisioners/baremetal/index.ts";

describe("examples/baremetal.yaml", () => {
  it("is a valid three-master bare-metal lab with pinned host keys and a VIP", () => {
    const r = checkTopology(readFileSync("examples/baremetal.yaml", "utf8"), "examples/baremetal.yaml");
    expect(r.problems).toEqual([]);
    const p = plan(r.lab!);
    expect(p.provider.type).toBe("baremetal");
    expect(p.masters).toHaveLength(3);
    expect(p.workers).toHaveLength(1);
    expect(p.network.vip).toBe("192.168.50.10");
    expect(p.nodes.every((n) => n.ssh.hostKey?.startsWith("SHA256:"))).toBe(true);
    expect(p.workers[0]!.ssh).toMatchObject({ user: "root", port: 2222 });
  });

  it("expands ~ in key paths", () => {
    expect(expandHome("~/.ssh/id_ed25519")).toBe(`${homedir()}/.ssh/id_ed25519`);
    expect(expandHome("/abs/key")).toBe("/abs/key");
  });
});
