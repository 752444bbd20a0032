import { describe, expect, it } from "vitest";
import { guestFiles, MASKED_UNITS } from "../../../images/guest-config.ts";
import { DEBIAN_12, isImagePath, recipeKey } from "../../../images/recipe.ts";

describe("image recipe", () => {
  it("includes what cloud-init and the cluster need (python3-cffi-backend: debootstrap misses it)", () => {
    for (const pkg of [
      "openssh-server",
      "cloud-init",
      "python3-cffi-backend",
      "linux-image-cloud-amd64",
      "etcd-server",
      "etcd-client",
      "containerd",
      "runc",
      "containernetworking-plugins",
      "nftables",
      "keepalived",
    ]) {
      expect(DEBIAN_12.packages).toContain(pkg);
    }
  });

  it("keys the cache on the recipe content: same recipe same key, any change a new key", () => {
    expect(recipeKey(DEBIAN_12)).toBe(recipeKey({ ...DEBIAN_12 }));
    expect(recipeKey(DEBIAN_12)).toMatch(/^debian-12-[0-9a-f]{12}$/);
    expect(recipeKey({ ...DEBIAN_12, packages: [...DEBIAN_12.packages, "curl"] })).not.toBe(
      recipeKey(DEBIAN_12),
    );
    expect(recipeKey({ ...DEBIAN_12, rootSizeMiB: 4096 })).not.toBe(recipeKey(DEBIAN_12));
  });

  it("keeps etcd and containerd masked until the bootstrap enables them", () => {
    expect(MASKED_UNITS).toEqual(expect.arrayContaining(["etcd.service", "containerd.service"]));
  });

  it("limits cloud-init to NoCloud and ed25519 host keys", () => {
    const cfg = guestFiles()["etc/cloud/cloud.cfg.d/99-lab.cfg"]!;
    expect(cfg).toMatch(/datasource_list: \[NoCloud, None\]/);
    expect(cfg).toMatch(/ssh_genkeytypes: \[ed25519\]/);
    expect(cfg).not.toMatch(/locale/);
  });

  it("tells recipe names from image paths", () => {
    expect(isImagePath("debian-12")).toBe(false);
    expect(isImagePath("./debian-12-genericcloud-amd64.qcow2")).toBe(true);
    expect(isImagePath("/images/x.img")).toBe(true);
  });
});
