/** Durations on the command line, like kind's `--wait`: `90s`, `5m`, `1m30s`, `500ms`, `1h`. Pure. */
import { LabError } from "../topology/errors.ts";

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

export function parseDuration(text: string, flag = "--wait"): number {
  const t = text.trim();
  let ms = 0;
  let rest = t;
  const part = /^(\d+(?:\.\d+)?)(ms|s|m|h)/;
  for (let m = part.exec(rest); m; m = part.exec(rest)) {
    ms += Number(m[1]) * UNIT_MS[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  if (!t || rest || ms <= 0)
    throw new LabError({
      code: "BAD_DURATION",
      what: `${flag} ${JSON.stringify(text)} is not a duration`,
      fix: `give a positive duration with a unit, e.g. ${flag} 5m, ${flag} 90s or ${flag} 1m30s`,
      source: "user",
    });
  return Math.round(ms);
}
