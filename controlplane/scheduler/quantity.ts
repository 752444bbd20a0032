/** Quantities as the scheduler counts them: a missing or malformed value counts as 0 (the API server validates on write). */
import { parseQuantity as parseOrUndefined } from "../../lib/quantity.ts";

export function parseQuantity(q: string | number | undefined): number {
  return parseOrUndefined(q) ?? 0;
}

/** CPU in millicores (integer, as the scheduler counts). */
export function milliCpu(q: string | number | undefined): number {
  return Math.round(parseQuantity(q) * 1000);
}
