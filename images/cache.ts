/**
 * The image cache: one directory per built image under imagesDir(), named by the recipe key.
 * A directory only appears there complete (built in a temp dir beside it, then renamed), so a
 * failed or interrupted build never leaves half an image behind.
 */
import { existsSync } from "node:fs";
import { readdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { imagesDir } from "../topology/state.ts";

export interface ImageManifest {
  key: string;
  recipe: string;
  builtAt: string;
  kernel: string;
  initrd: string;
  disk: string;
  kernelCmdline: string;
  buildSeconds: number;
}

export interface CachedImage extends ImageManifest {
  dir: string;
  /** Absolute paths of the files. */
  paths: { disk: string; kernel: string; initrd: string };
  sizeBytes: number;
}

/** Where images live: $LAB_IMAGE_CACHE (shared between test runs and labs), else $LAB_HOME/images. */
export function imageCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.LAB_IMAGE_CACHE || imagesDir();
}

export async function readImage(key: string, cacheDir = imageCacheDir()): Promise<CachedImage | undefined> {
  const dir = join(cacheDir, key);
  const manifestPath = join(dir, "manifest.json");
  if (!existsSync(manifestPath)) return undefined;
  const m = JSON.parse(await readFile(manifestPath, "utf8")) as ImageManifest;
  const paths = { disk: join(dir, m.disk), kernel: join(dir, m.kernel), initrd: join(dir, m.initrd) };
  let sizeBytes = 0;
  for (const p of Object.values(paths)) {
    if (!existsSync(p)) return undefined;
    sizeBytes += (await stat(p)).size;
  }
  return { ...m, dir, paths, sizeBytes };
}

export async function listImages(cacheDir = imageCacheDir()): Promise<CachedImage[]> {
  if (!existsSync(cacheDir)) return [];
  const out: CachedImage[] = [];
  for (const name of (await readdir(cacheDir)).sort()) {
    if (name.startsWith(".")) continue; // temp build dirs
    const img = await readImage(name, cacheDir);
    if (img) out.push(img);
  }
  return out;
}

/** Removes images whose key or recipe name equals `which`; returns the removed keys. */
export async function removeImages(which: string, cacheDir = imageCacheDir()): Promise<string[]> {
  const removed: string[] = [];
  for (const img of await listImages(cacheDir)) {
    if (img.key === which || img.recipe === which) {
      await rm(img.dir, { recursive: true, force: true });
      removed.push(img.key);
    }
  }
  return removed;
}
