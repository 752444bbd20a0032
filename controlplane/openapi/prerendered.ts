/**
 * The OpenAPI documents the lab-server bundle ships, rendered when the bundle is built
 * (bootstrap/artifacts.ts writes prerenderOpenApi's output): lab-server reads one from disk the
 * first time it is asked instead of rendering it on its event loop. In a checkout (tsx) there are
 * none, and lab-server renders them as before.
 */
import { readFileSync } from "node:fs";

/** The folder beside the bundle's loader (the bundle's import.meta.url is the loader's URL). */
export const PRERENDERED_DIR = "openapi-docs";

/** A document's file name: its cache key with "/" spelled "~" (`v3~apis~apps~v1`). */
export function prerenderedFile(key: string): string {
  return key.replaceAll("/", "~");
}

/** The shipped bytes of a document, or undefined when none was shipped. */
export function readPrerendered(key: string): Buffer | undefined {
  try {
    return readFileSync(new URL(`./${PRERENDERED_DIR}/${prerenderedFile(key)}`, import.meta.url));
  } catch {
    return undefined;
  }
}
