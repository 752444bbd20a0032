/** Memory and disk sizes as Kubernetes-style quantities: `512Mi`, `2Gi`, `10G`, `1073741824`. */

const UNITS: Record<string, number> = {
  "": 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

const QUANTITY = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/;

/** Bytes, or an error message naming the accepted forms. */
export function parseQuantity(s: string): number | string {
  const m = QUANTITY.exec(s.trim());
  if (!m) return `"${s}" is not a size: use a number with a unit such as 512Mi, 2Gi or 20G`;
  return Math.round(Number(m[1]) * UNITS[m[2] ?? ""]!);
}

export function toMiB(bytes: number): number {
  return Math.floor(bytes / 2 ** 20);
}
