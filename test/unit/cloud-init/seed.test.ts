import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { renderSeed } from "../../../cloud-init/seed.ts";

const input = {
  lab: "demo",
  hostname: "worker-1",
  user: "lab",
  authorizedKey: "ssh-ed25519 AAAAC3NzaClient lab-demo\n",
  hostKey: {
    privateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----",
    publicKey: "ssh-ed25519 AAAAC3NzaHost worker-1.demo",
  },
  mac: "52:54:00:01:02:03",
  address: "10.200.3.21",
  prefix: 24,
  gateway: "10.200.3.1",
};

describe("renderSeed", () => {
  const seed = renderSeed(input);

  it("quotes an all-digit MAC, which cloud-init's YAML 1.1 would read as a base-60 number", () => {
    const digits = renderSeed({ ...input, mac: "52:54:00:26:56:11" });
    const net = parse(digits["network-config"], { version: "1.1" });
    expect(net.ethernets.eth0.match.macaddress).toBe("52:54:00:26:56:11");
  });

  it("user-data is cloud-config with the hostname and a sudo user holding the lab's key", () => {
    expect(seed["user-data"].startsWith("#cloud-config\n")).toBe(true);
    const ud = parse(seed["user-data"]);
    expect(ud.hostname).toBe("worker-1");
    expect(ud.users).toEqual([
      expect.objectContaining({
        name: "lab",
        sudo: "ALL=(ALL) NOPASSWD:ALL",
        lock_passwd: true,
        ssh_authorized_keys: ["ssh-ed25519 AAAAC3NzaClient lab-demo"],
      }),
    ]);
    expect(ud.ssh_pwauth).toBe(false);
  });

  it("injects the pre-generated ed25519 host key and generates no other", () => {
    const ud = parse(seed["user-data"]);
    expect(ud.ssh_keys.ed25519_public).toBe(input.hostKey.publicKey);
    expect(ud.ssh_keys.ed25519_private).toBe(input.hostKey.privateKey + "\n");
    expect(ud.ssh_genkeytypes).toEqual([]);
    expect(ud.ssh_deletekeys).toBe(true);
  });

  it("network-config v2 gives the planned address to the NIC with the planned MAC", () => {
    const nc = parse(seed["network-config"]);
    expect(nc.version).toBe(2);
    expect(nc.ethernets.eth0).toEqual({
      match: { macaddress: "52:54:00:01:02:03" },
      "set-name": "eth0",
      addresses: ["10.200.3.21/24"],
      routes: [{ to: "0.0.0.0/0", via: "10.200.3.1" }],
    });
    const noGw = parse(renderSeed({ ...input, gateway: undefined })["network-config"]);
    expect(noGw.ethernets.eth0.routes).toBeUndefined();
  });

  it("meta-data names the instance per lab and node", () => {
    expect(parse(seed["meta-data"])).toEqual({
      "instance-id": "demo-worker-1",
      "local-hostname": "worker-1",
    });
  });
});
