/** Timestamps as Kubernetes writes them. Pure: imports nothing from the project. */

/** RFC 3339 in whole seconds, UTC (metav1.Time): `2024-01-02T03:04:05Z`. */
export function timestamp(at: number | Date = Date.now()): string {
  return new Date(at).toISOString().replace(/\.\d+Z$/, "Z");
}

/** RFC 3339 with microseconds (metav1.MicroTime, as in Lease times): `2024-01-02T03:04:05.123000Z`. */
export function microTime(at: number | Date): string {
  return new Date(at).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}
