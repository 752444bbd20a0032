/**
 * Guest image recipes: what goes into a base image. The cache key is a hash of the recipe AND of
 * every file the builder writes into the guest, so any change to either yields a new image and
 * an unchanged recipe is found in the cache (a second build is instant).
 */
import { createHash } from "node:crypto";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { LabError, readUserFile } from "../topology/errors.ts";
import { guestFiles, MASKED_UNITS, ENABLED_UNITS } from "./guest-config.ts";

/** Bumped when the build procedure itself changes in a way the recipe does not show. */
export const BUILDER_VERSION = 1;

export const Recipe = z.strictObject({
  name: z.string().regex(/^[a-z0-9][-a-z0-9.]*$/),
  suite: z.string().min(1).default("bookworm"),
  mirror: z.string().url().default("http://deb.debian.org/debian"),
  variant: z.string().default("minbase"),
  packages: z.array(z.string().min(1)).min(1),
  /** Size of the root filesystem in the base image; per-VM overlays grow it to the node's disk. */
  rootSizeMiB: z.number().int().min(512).default(2048),
});
export type Recipe = z.output<typeof Recipe>;

/**
 * The built-in guest: Debian 12 with what the cluster needs later. python3-cffi-backend is listed
 * because debootstrap does not resolve the virtual package python3-cryptography depends on, and
 * cloud-init stays unconfigured without it.
 */
export const DEBIAN_12: Recipe = Recipe.parse({
  name: "debian-12",
  packages: [
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "openssh-server",
    "cloud-init",
    "python3-cffi-backend",
    "iproute2",
    "iputils-ping",
    "ca-certificates",
    "linux-image-cloud-amd64",
    "initramfs-tools",
    "etcd-server",
    "etcd-client",
    "containerd",
    "runc",
    "containernetworking-plugins",
    "nftables",
    "keepalived",
    // The lab's offline time source (bootstrap step "clock"): TCG guests drift seconds apart.
    "chrony",
    "sudo",
  ],
});

export const BUILTIN_RECIPES: Record<string, Recipe> = { [DEBIAN_12.name]: DEBIAN_12 };

/** True when a topology's `image` names a user-supplied disk image rather than a recipe. */
export function isImagePath(image: string): boolean {
  return image.includes("/") || /\.(qcow2|img|raw)$/i.test(image);
}

/** Cache key: recipe name plus a short hash of everything that decides the image's content. */
export function recipeKey(recipe: Recipe): string {
  const h = createHash("sha256")
    .update(
      JSON.stringify({
        builder: BUILDER_VERSION,
        recipe,
        files: guestFiles(),
        masked: MASKED_UNITS,
        enabled: ENABLED_UNITS,
      }),
    )
    .digest("hex")
    .slice(0, 12);
  return `${recipe.name}-${h}`;
}

/** A built-in recipe by name, or a recipe file (YAML or JSON) by path. */
export async function loadRecipe(nameOrPath = DEBIAN_12.name): Promise<Recipe> {
  const builtin = BUILTIN_RECIPES[nameOrPath];
  if (builtin) return builtin;
  if (!nameOrPath.includes("/") && !/\.(ya?ml|json)$/.test(nameOrPath)) {
    throw new LabError({
      code: "IMAGE_UNKNOWN_RECIPE",
      what: `unknown image recipe "${nameOrPath}"`,
      fix: `use one of ${Object.keys(BUILTIN_RECIPES).join(", ")} or a path to a recipe file`,
    });
  }
  const text = await readUserFile(
    nameOrPath,
    (code) =>
      new LabError({
        code: "IMAGE_RECIPE_UNREADABLE",
        what: `cannot read recipe ${nameOrPath}: ${code}`,
        fix: "check the path",
      }),
  );
  const parsed = Recipe.safeParse(parseYaml(text));
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new LabError({
      code: "IMAGE_RECIPE_INVALID",
      what: `${issue.path.join(".") || "(file)"}: ${issue.message}`,
      where: nameOrPath,
      fix: "a recipe has name, packages and optional suite, mirror, variant, rootSizeMiB",
    });
  }
  return parsed.data;
}
