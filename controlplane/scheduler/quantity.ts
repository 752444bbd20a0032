/** Kubernetes resource quantities ("100m", "1.5", "128Mi", "1G", "1e3") as numbers. */

const SUFFIX: Record<string, number> = {
  "": 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** Parses a quantity; undefined or malformed → 0 (the API server validates on write). */
export function parseQuantity(q: string | number | undefined): number {
  if (q === undefined) return 0;
  if (typeof q === "number") return q;
  const m = /^([+-]?[0-9.]+(?:[eE][+-]?\d+)?)([a-zA-Z]*)$/.exec(q.trim());
  if (!m) return 0;
  const mult = SUFFIX[m[2]!];
  if (mult === undefined) return 0;
  return Number(m[1]) * mult;
}

/** CPU in millicores (integer, as the scheduler counts). */
export function milliCpu(q: string | number | undefined): number {
  return Math.round(parseQuantity(q) * 1000);
}
