/**
 * Cron schedules as a CronJob's spec.schedule takes them (robfig/cron's standard parser, which
 * kube-controller-manager uses): five fields (minute hour day-of-month month day-of-week) with
 * `*`, `?`, lists, ranges, steps and the names JAN-DEC / SUN-SAT, or one of the descriptors
 * @yearly (@annually), @monthly, @weekly, @daily (@midnight), @hourly and `@every <duration>`.
 * Times are computed on the wall clock of an IANA time zone (Intl), so `0 9 * * *` in
 * Europe/Berlin is 09:00 there whatever the offset of the day.
 */

export class CronError extends Error {}

interface Field {
  min: number;
  max: number;
  names?: string[];
}

const FIELDS: Field[] = [
  { min: 0, max: 59 },
  { min: 0, max: 23 },
  { min: 1, max: 31 },
  {
    min: 1,
    max: 12,
    names: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
  },
  { min: 0, max: 6, names: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"] },
];
const FIELD_NAMES = ["minute", "hour", "day of month", "month", "day of week"];

const DESCRIPTORS: Record<string, string> = {
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
  "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@hourly": "0 * * * *",
};

export type Schedule =
  | {
      kind: "fields";
      sets: Set<number>[];
      /** Whether day-of-month / day-of-week were `*` or `?` (then both must match, else either). */
      domStar: boolean;
      dowStar: boolean;
    }
  | { kind: "every"; ms: number };

function value(text: string, f: Field, name: string): number {
  const i = f.names?.indexOf(text.toLowerCase()) ?? -1;
  if (i >= 0) return i + f.min;
  if (!/^\d+$/.test(text)) throw new CronError(`failed to parse int from ${text}: invalid syntax`);
  const n = Number(text);
  if (n < f.min) throw new CronError(`beginning of range (${n}) below minimum (${f.min}): ${name}`);
  if (n > f.max) throw new CronError(`end of range (${n}) above maximum (${f.max}): ${name}`);
  return n;
}

function parseField(expr: string, f: Field): Set<number> {
  const out = new Set<number>();
  for (const part of expr.split(",")) {
    const [range, stepText, extra] = part.split("/");
    if (extra !== undefined || range === undefined) throw new CronError(`too many slashes: ${part}`);
    let lo: number;
    let hi: number;
    if (range === "*" || range === "?") [lo, hi] = [f.min, f.max];
    else {
      const [a, b, more] = range.split("-");
      if (more !== undefined) throw new CronError(`too many hyphens: ${part}`);
      lo = value(a ?? "", f, part);
      hi = b === undefined ? (stepText === undefined ? lo : f.max) : value(b, f, part);
    }
    if (lo > hi) throw new CronError(`beginning of range (${lo}) beyond end of range (${hi}): ${part}`);
    let step = 1;
    if (stepText !== undefined) {
      if (!/^\d+$/.test(stepText))
        throw new CronError(`failed to parse int from ${stepText}: invalid syntax`);
      step = Number(stepText);
      if (step === 0) throw new CronError(`step of range should be a positive number: ${part}`);
    }
    for (let v = lo; v <= hi; v += step) out.add(v);
  }
  return out;
}

const UNITS: Record<string, number> = {
  h: 3_600_000,
  m: 60_000,
  s: 1000,
  ms: 1,
  us: 0.001,
  µs: 0.001,
  ns: 1e-6,
};

/** Go's time.ParseDuration for `@every` (e.g. "1h30m", "90s"). */
function goDuration(text: string): number {
  const re = /(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s)/gy;
  let ms = 0;
  let end = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    ms += Number(m[1]) * UNITS[m[2]!]!;
    end = re.lastIndex;
  }
  if (text === "" || end !== text.length) throw new CronError(`time: invalid duration "${text}"`);
  return ms;
}

/** Parses a schedule; throws CronError with robfig/cron's wording when it is not one. */
export function parseSchedule(spec: string): Schedule {
  const text = spec.trim();
  if (text === "") throw new CronError("empty spec string");
  if (text.startsWith("@every ")) {
    const ms = goDuration(text.slice("@every ".length).trim());
    // robfig/cron rounds down to whole seconds and runs at least every second.
    return { kind: "every", ms: Math.max(1000, Math.floor(ms / 1000) * 1000) };
  }
  if (text.startsWith("@")) {
    const d = DESCRIPTORS[text.toLowerCase()];
    if (!d) throw new CronError(`unrecognized descriptor: ${text}`);
    return parseSchedule(d);
  }
  const parts = text.split(/\s+/);
  if (parts.length !== 5) throw new CronError(`expected exactly 5 fields, found ${parts.length}: ${text}`);
  const sets = parts.map((p, i) => {
    try {
      return parseField(p, FIELDS[i]!);
    } catch (err) {
      throw new CronError(`${(err as Error).message} (${FIELD_NAMES[i]})`);
    }
  });
  // robfig/cron: a day field is "starred" when a part is `*` or `?` with no step above 1.
  const starred = (field: string): boolean => field.split(",").some((p) => /^[*?](\/0*1)?$/.test(p));
  return { kind: "fields", sets, domStar: starred(parts[2]!), dowStar: starred(parts[4]!) };
}

/** Whether an IANA time zone name is known here (as Go's time.LoadLocation). */
export function validTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

interface Wall {
  y: number;
  mo: number; // 1-12
  d: number;
  h: number;
  mi: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function wallOf(ms: number, tz: string): Wall {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: tz,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
    });
    formatters.set(tz, f);
  }
  const p: Record<string, number> = {};
  for (const x of f.formatToParts(new Date(ms))) if (x.type !== "literal") p[x.type] = Number(x.value);
  return { y: p.year!, mo: p.month!, d: p.day!, h: p.hour! % 24, mi: p.minute! };
}

const wallMs = (w: Wall): number => Date.UTC(w.y, w.mo - 1, w.d, w.h, w.mi);

/** The instant whose wall clock in `tz` is `w`: the earlier one across an overlap, the later across a gap. */
function instantOf(w: Wall, tz: string): number {
  const target = wallMs(w);
  const offsetAt = (t: number): number => wallMs(wallOf(t, tz)) - t;
  // The offsets a day either side can have cover every transition near the target.
  const candidates = [...new Set([offsetAt(target - 86_400_000), offsetAt(target + 86_400_000)])]
    .map((off) => target - off)
    .sort((a, b) => a - b);
  return candidates.find((t) => wallMs(wallOf(t, tz)) === target) ?? candidates[candidates.length - 1]!;
}

function dayMatches(s: Extract<Schedule, { kind: "fields" }>, w: Wall): boolean {
  const dom = s.sets[2]!.has(w.d);
  const dow = s.sets[4]!.has(new Date(Date.UTC(w.y, w.mo - 1, w.d)).getUTCDay());
  return s.domStar || s.dowStar ? dom && dow : dom || dow;
}

/** The first time strictly after `afterMs` the schedule fires, or undefined within 5 years. */
export function nextTime(s: Schedule, afterMs: number, tz = "UTC"): number | undefined {
  if (s.kind === "every") return Math.floor(afterMs / 1000) * 1000 + s.ms;
  const start = wallOf(afterMs, tz);
  // The next whole minute on the wall clock.
  let t = wallMs(start) + 60_000;
  const limit = t + 5 * 366 * 86_400_000;
  while (t < limit) {
    const d = new Date(t);
    const w: Wall = {
      y: d.getUTCFullYear(),
      mo: d.getUTCMonth() + 1,
      d: d.getUTCDate(),
      h: d.getUTCHours(),
      mi: d.getUTCMinutes(),
    };
    if (!s.sets[3]!.has(w.mo)) {
      t = Date.UTC(w.y, w.mo, 1);
      continue;
    }
    if (!dayMatches(s, w)) {
      t = Date.UTC(w.y, w.mo - 1, w.d + 1);
      continue;
    }
    if (!s.sets[1]!.has(w.h)) {
      t = Date.UTC(w.y, w.mo - 1, w.d, w.h + 1);
      continue;
    }
    if (!s.sets[0]!.has(w.mi)) {
      t += 60_000;
      continue;
    }
    const at = instantOf(w, tz);
    if (at > afterMs) return at;
    t += 60_000;
  }
  return undefined;
}
