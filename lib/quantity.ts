/**
 * Kubernetes resource quantities (CPU in millicores, memory in bytes) for the agent and the
 * scheduler, and the narrower byte sizes of a topology file. Pure: imports nothing from the project.
 */

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

const QUANTITY = /^([+-]?\d+(?:\.\d*)?|[+-]?\.\d+)(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E))?$/;

/** The value of a quantity string ("500m", "1.5", "64Mi", "1e3"), or undefined if it is not one. */
export function parseQuantity(q: string | number | undefined): number | undefined {
  if (q === undefined) return undefined;
  if (typeof q === "number") return q;
  const m = QUANTITY.exec(q.trim());
  if (!m) return undefined;
  const base = Number(m[1]);
  if (m[2] !== undefined) return base * 10 ** Number(m[2]);
  return base * SUFFIX[m[3] ?? ""]!;
}

/** CPU in millicores, rounded up like the kubelet (a request of 0.1m still gets 1m). */
export function cpuMillis(q: string | number | undefined): number | undefined {
  const v = parseQuantity(q);
  return v === undefined ? undefined : Math.ceil(Math.round(v * 1e6) / 1e3);
}

export function memoryBytes(q: string | number | undefined): number | undefined {
  const v = parseQuantity(q);
  return v === undefined ? undefined : Math.ceil(v);
}

const SIZE = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/;

/** A memory or disk size (`512Mi`, `2Gi`, `10G`, `1073741824`) in bytes, or an error message naming the accepted forms. */
export function parseSize(s: string): number | string {
  const m = SIZE.exec(s.trim());
  if (!m) return `"${s}" is not a size: use a number with a unit such as 512Mi, 2Gi or 20G`;
  return Math.round(Number(m[1]) * SUFFIX[m[2] ?? ""]!);
}

export function toMiB(bytes: number): number {
  return Math.floor(bytes / 2 ** 20);
}
