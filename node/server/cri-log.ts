/**
 * CRI container log files (`<RFC3339Nano> <stream> <P|F> <message>` per line, P = a partial line
 * continued by the next entry) turned into what `kubectl logs` shows. Pure: the server does the I/O.
 */

export interface LogOptions {
  /** Prefix each line with its RFC3339Nano timestamp. */
  timestamps: boolean;
  /** Only the last N lines (undefined: all). */
  tailLines?: number;
  /** Only lines written at or after this time (ms since the epoch). */
  sinceMs?: number;
  /** Stop after this many bytes of output. */
  limitBytes?: number;
}

export interface LogLine {
  time: string;
  stream: "stdout" | "stderr";
  /** The whole line, newline included when the entry was complete (F). */
  text: string;
}

/**
 * Splits raw log file content into full lines; `rest` is an unterminated trailing fragment (the
 * runtime is still writing it) to prepend to the next chunk when following.
 */
export function parseCriLog(
  raw: string,
  pendingPartial = "",
): { lines: LogLine[]; rest: string; partial: string } {
  const lines: LogLine[] = [];
  let partial = pendingPartial;
  const records = raw.split("\n");
  const rest = records.pop() ?? "";
  for (const rec of records) {
    const m = /^(\S+) (stdout|stderr) (P|F) ?(.*)$/.exec(rec);
    if (!m) continue; // not CRI format: skip rather than show garbage
    const [, time, stream, tag, msg] = m;
    if (tag === "P") {
      partial += msg;
      continue;
    }
    lines.push({ time: time!, stream: stream as LogLine["stream"], text: `${partial}${msg}\n` });
    partial = "";
  }
  return { lines, rest, partial };
}

/** Applies since and tail (in that order, as the kubelet does) to already parsed lines. */
export function selectLines(lines: LogLine[], opts: LogOptions): LogLine[] {
  let out = lines;
  if (opts.sinceMs !== undefined) {
    const since = opts.sinceMs;
    out = out.filter((l) => Date.parse(l.time) >= since);
  }
  if (opts.tailLines !== undefined) out = opts.tailLines <= 0 ? [] : out.slice(-opts.tailLines);
  return out;
}

export function formatLine(l: LogLine, opts: Pick<LogOptions, "timestamps">): string {
  return opts.timestamps ? `${l.time} ${l.text}` : l.text;
}

/** Parses the kubelet's containerLogs query; throws a message for a bad value. */
export function parseLogQuery(
  q: URLSearchParams,
  now = Date.now(),
): LogOptions & { follow: boolean; previous: boolean } {
  const bool = (k: string): boolean => q.get(k) === "true" || q.get(k) === "1";
  const int = (k: string): number | undefined => {
    const v = q.get(k);
    if (v === null || v === "") return undefined;
    if (!/^-?\d+$/.test(v)) throw new Error(`${k} must be an integer, got "${v}"`);
    return Number(v);
  };
  const tailLines = int("tailLines");
  const sinceSeconds = int("sinceSeconds");
  const limitBytes = int("limitBytes");
  if (sinceSeconds !== undefined && sinceSeconds < 1) throw new Error("sinceSeconds must be at least 1");
  if (limitBytes !== undefined && limitBytes < 1) throw new Error("limitBytes must be at least 1");
  const sinceTime = q.get("sinceTime");
  let sinceMs = sinceSeconds !== undefined ? now - sinceSeconds * 1000 : undefined;
  if (sinceTime) {
    const t = Date.parse(sinceTime);
    if (Number.isNaN(t)) throw new Error(`sinceTime must be RFC3339, got "${sinceTime}"`);
    sinceMs = t;
  }
  return {
    follow: bool("follow"),
    previous: bool("previous"),
    timestamps: bool("timestamps"),
    ...(tailLines !== undefined && tailLines >= 0 ? { tailLines } : {}),
    ...(sinceMs !== undefined ? { sinceMs } : {}),
    ...(limitBytes !== undefined ? { limitBytes } : {}),
  };
}
