import { describe, expect, it } from "vitest";
import { unreachableHint } from "../../../ssh/ready.ts";

describe("unreachableHint", () => {
  it("says that nothing answered ARP when the address is unreachable, and where to look", () => {
    const hint = unreachableHint("connect EHOSTUNREACH 10.206.31.21:22");
    expect(hint).toMatch(/nothing answered ARP/);
    expect(hint).toMatch(/systemd-networkd or cloud-init/);
  });

  it("adds nothing for a refused connection or a timeout (sshd not up yet is normal while booting)", () => {
    expect(unreachableHint("connect ECONNREFUSED 10.206.31.21:22")).toBeUndefined();
    expect(unreachableHint("Timed out while waiting for handshake")).toBeUndefined();
  });
});
