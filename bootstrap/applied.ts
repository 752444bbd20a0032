/**
 * What a bootstrap step last applied on a node, so a second `lab up` can skip a step whose result
 * still stands instead of re-checking it over SSH (every exec costs seconds under TCG).
 *
 * A step describes what it puts on a node as `NodeWork` (files, uploaded artifacts, units, images,
 * other inputs). Its fingerprint (sha256 of that, the step id and the bootstrap code version) is
 * written to `/var/lib/lab/applied/STEP.sha256` as the last thing the step does on the node, with
 * the list of what to look at. One probe per node at the start of a run reads every marker and the
 * facts that prove the result still stands (file hashes and modes, upload sidecars, unit states,
 * images in containerd). A step is skipped on a node only when the fingerprint is the one it would
 * write now and nothing drifted (`staleReason`, pure).
 */
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { NODE_CONTAINERD } from "../templates/lab-agent.ts";
import { HOST_PATHS } from "../templates/paths.ts";
import { sha256 } from "../lib/digest.ts";
import { shq } from "../lib/shell.ts";
import { SHA256_SIDECAR } from "../ssh/upload.ts";

/** Where each node keeps one marker per applied step (removed by `lab down` with /var/lib/lab). */
export const APPLIED_DIR = `${HOST_PATHS.varLib}/applied`;

/** What a step leaves on one node, as far as a rerun can check it. */
export interface NodeWork {
  /** Files written from bytes: hashed in full by the probe (they are small). */
  files: { path: string; data: string | Buffer; mode?: number; owner?: string }[];
  /** Files uploaded from local files (runtime, bundles, archives): checked by their sha256 sidecar. */
  uploads: { path: string; sha256: string; mode?: number }[];
  /** systemd units that must be active for the result to stand. */
  units: string[];
  /** Images that must be present in the node's containerd (namespace k8s.io). */
  images: string[];
  /** Anything else the result depends on (architecture, interface, a role). */
  inputs: Record<string, string>;
}

export const emptyWork = (): NodeWork => ({ files: [], uploads: [], units: [], images: [], inputs: {} });

const modeOf = (mode: number | undefined) => (mode ?? 0o644).toString(8);

/** The fingerprint of `work` as step `step` of bootstrap code `version` applies it. Pure. */
export function fingerprintOf(step: string, version: string, work: NodeWork): string {
  const canonical = {
    step,
    version,
    files: work.files
      .map((f) => [f.path, sha256(f.data), modeOf(f.mode), f.owner ?? "root:root"])
      .sort((a, b) => a[0]!.localeCompare(b[0]!)),
    uploads: work.uploads
      .map((u) => [u.path, u.sha256, modeOf(u.mode)])
      .sort((a, b) => a[0]!.localeCompare(b[0]!)),
    units: [...work.units].sort(),
    images: [...work.images].sort(),
    inputs: Object.entries(work.inputs).sort(([a], [b]) => a.localeCompare(b)),
  };
  return sha256(JSON.stringify(canonical));
}

/** The marker's text: the fingerprint, then what the probe must look at. Pure. */
export function renderMarker(fingerprint: string, work: NodeWork): string {
  return [
    fingerprint,
    ...work.files.map((f) => `file ${f.path}`),
    ...work.uploads.map((u) => `upload ${u.path}`),
    ...work.units.map((u) => `unit ${u}`),
    ...work.images.map((i) => `image ${i}`),
  ].join("\n");
}

/** One shell command (as root) that writes the marker atomically. */
export function writeMarkerCommand(step: string, marker: string, dir = APPLIED_DIR): string {
  const path = `${dir}/${step}.sha256`;
  return `mkdir -p ${shq(dir)} && printf '%s\\n' ${marker
    .split("\n")
    .map(shq)
    .join(" ")} > ${shq(path + ".tmp")} && mv -f ${shq(path + ".tmp")} ${shq(path)}`;
}

/**
 * One shell script (as root) printing every fact a rerun needs, one per line (see parseProbe): architecture,
 * clock, addresses, chronyd, each marker's fingerprint, and for what the markers list: sha256,
 * mode and owner of files; stat and sidecar of uploads; unit states; images. Paths in markers
 * never contain spaces (they are lab's own).
 */
export function probeScript(dir = APPLIED_DIR): string {
  const d = shq(dir);
  // Few processes: each fork costs tens of milliseconds in a busy TCG guest.
  const listed = (kind: string) =>
    `$(awk '$1=="${kind}" && !seen[$2]++ {print $2}' ${d}/*.sha256 2>/dev/null)`;
  return [
    `echo "arch $(uname -m)"`,
    `echo "now $(date +%s)"`,
    `command -v chronyd >/dev/null 2>&1 && echo chronyd`,
    `echo '== addr'; ip -o -4 addr show 2>/dev/null; echo ==`,
    `for f in ${d}/*.sha256; do [ -f "$f" ] || continue; read -r fp < "$f"; b=\${f##*/}; echo "applied \${b%.sha256} $fp"; done`,
    `files=${listed("file")}`,
    `if [ -n "$files" ]; then echo '== sha'; sha256sum $files 2>/dev/null; echo ==; stat -c 'stat %n %a %U:%G' $files 2>/dev/null; fi`,
    `uploads=${listed("upload")}`,
    `if [ -n "$uploads" ]; then stat -c 'ustat %n %a %s %Y %i' $uploads 2>/dev/null; ` +
      `for p in $uploads; do if [ -f "$p${SHA256_SIDECAR}" ]; then read -r l < "$p${SHA256_SIDECAR}"; echo "sidecar $p $l"; fi; done; fi`,
    `units=${listed("unit")}`,
    `if [ -n "$units" ]; then echo '== unitprop'; systemctl show -p Id -p ActiveState $units 2>/dev/null; echo ==; fi`,
    `if [ -n "${listed("image")}" ] && [ -S ${NODE_CONTAINERD.socket} ]; then ` +
      `echo '== image'; ctr --address ${NODE_CONTAINERD.socket} --namespace k8s.io images ls -q 2>/dev/null; echo ==; fi`,
    `true`,
  ].join("\n");
}

export interface NodeFacts {
  arch: string;
  /** `ip -o -4 addr show` as printed on the node. */
  addresses: string;
  chronyd: boolean;
  /** Seconds the node's clock is off the lab host's, 0 when within what the probe can tell. */
  clockOffsetS: number;
  applied: Map<string, string>;
  files: Map<string, { sha256?: string; mode?: string; owner?: string }>;
  uploads: Map<string, { stat?: string; mode?: string; sidecar?: { sha256: string; stat: string } }>;
  units: Map<string, string>;
  images: Set<string>;
}

/**
 * Parses the probe's output. `sentAt`/`doneAt` (ms) bracket the exec: the node's `date` ran in
 * between, so only an offset beyond that window (plus a second of rounding) counts. Pure.
 */
export function parseProbe(out: string, sentAt: number, doneAt: number): NodeFacts {
  const f: NodeFacts = {
    arch: "",
    addresses: "",
    chronyd: false,
    clockOffsetS: 0,
    applied: new Map(),
    files: new Map(),
    uploads: new Map(),
    units: new Map(),
    images: new Set(),
  };
  const addrs: string[] = [];
  const file = (p: string) => f.files.get(p) ?? f.files.set(p, {}).get(p)!;
  const upload = (p: string) => f.uploads.get(p) ?? f.uploads.set(p, {}).get(p)!;
  let unitId: string | undefined;
  let unitState: string | undefined;
  const flushUnit = () => {
    if (unitId) f.units.set(unitId, unitState ?? "unknown");
    unitId = unitState = undefined;
  };
  // Output of a command that cannot prefix its own lines comes between `== KIND` and `==`: each
  // of its lines counts as `KIND LINE` (no `sed` per command: forks are dear on a busy guest).
  let section = "";
  for (const raw of out.split("\n")) {
    if (raw === "==" || raw.startsWith("== ")) {
      section = raw.slice(3).trim();
      continue;
    }
    const line = section ? `${section} ${raw}` : raw;
    const sp = line.indexOf(" ");
    const kind = sp < 0 ? line.trim() : line.slice(0, sp);
    const rest = sp < 0 ? "" : line.slice(sp + 1);
    const w = rest.trim().split(/\s+/);
    switch (kind) {
      case "arch":
        f.arch = rest.trim();
        break;
      case "now": {
        const now = Number(rest) * 1000;
        if (Number.isFinite(now)) {
          if (now < sentAt - 1000) f.clockOffsetS = Math.round((now - sentAt) / 1000);
          else if (now > doneAt + 1000) f.clockOffsetS = Math.round((now - doneAt) / 1000);
        }
        break;
      }
      case "chronyd":
        f.chronyd = true;
        break;
      case "addr":
        addrs.push(rest);
        break;
      case "applied":
        if (w[0] && w[1]) f.applied.set(w[0], w[1]);
        break;
      case "sha":
        // sha256sum prints `HASH  PATH`
        if (w[0] && w[1]) file(w[1]).sha256 = w[0];
        break;
      case "stat":
        if (w.length === 3) Object.assign(file(w[0]!), { mode: w[1], owner: w[2] });
        break;
      case "ustat":
        if (w.length === 5) Object.assign(upload(w[0]!), { mode: w[1], stat: w.slice(2).join(" ") });
        break;
      case "sidecar":
        if (w.length === 5) upload(w[0]!).sidecar = { sha256: w[1]!, stat: w.slice(2).join(" ") };
        break;
      case "unitprop": {
        // `systemctl show` prints a block of KEY=VALUE lines per unit, blocks apart by a blank line.
        const eq = rest.indexOf("=");
        if (eq < 0) flushUnit();
        else if (rest.slice(0, eq) === "Id") unitId = rest.slice(eq + 1).trim();
        else if (rest.slice(0, eq) === "ActiveState") unitState = rest.slice(eq + 1).trim();
        break;
      }
      case "image":
        if (rest.trim()) f.images.add(rest.trim());
        break;
    }
  }
  flushUnit();
  f.addresses = addrs.join("\n");
  return f;
}

/**
 * Why the step must run on this node, or undefined when what it would apply is already there and
 * still stands: same fingerprint, files intact, uploads intact, units active, images present. Pure.
 */
export function staleReason(
  step: string,
  fingerprint: string,
  work: NodeWork,
  facts: NodeFacts,
): string | undefined {
  const applied = facts.applied.get(step);
  if (!applied) return "not applied yet";
  if (applied !== fingerprint) return "what it applies changed";
  for (const want of work.files) {
    const got = facts.files.get(want.path);
    if (!got?.sha256) return `${want.path} is missing`;
    if (got.sha256 !== sha256(want.data)) return `${want.path} changed`;
    if (got.mode !== modeOf(want.mode) || got.owner !== (want.owner ?? "root:root"))
      return `${want.path} has mode ${got.mode ?? "?"} owner ${got.owner ?? "?"}`;
  }
  for (const want of work.uploads) {
    const got = facts.uploads.get(want.path);
    if (!got?.stat) return `${want.path} is missing`;
    // The sidecar is trusted only while the file's size, mtime and inode are those it recorded.
    if (!got.sidecar || got.sidecar.stat !== got.stat || got.sidecar.sha256 !== want.sha256)
      return `${want.path} changed`;
    if (got.mode !== modeOf(want.mode)) return `${want.path} has mode ${got.mode ?? "?"}`;
  }
  for (const unit of work.units) {
    const state = facts.units.get(unit) ?? "unknown";
    if (state !== "active") return `${unit} is ${state}`;
  }
  for (const image of work.images) if (!facts.images.has(image)) return `image ${image} is missing`;
  return undefined;
}

/**
 * The version of the code that applies the steps: a hash of bootstrap/steps/, ssh/session.ts,
 * ssh/upload.ts and this file. A changed command in a step makes every marker stale, so a `lab up` with a new
 * lab runs every step once again (as before markers existed) instead of trusting an old result.
 */
let codeVersion: Promise<string> | undefined;
export function bootstrapCodeVersion(): Promise<string> {
  codeVersion ??= (async () => {
    const here = fileURLToPath(new URL(".", import.meta.url));
    const stepsDir = `${here}steps`;
    const steps = (await readdir(stepsDir)).filter((n) => n.endsWith(".ts")).sort();
    const h = createHash("sha256");
    for (const path of [
      ...steps.map((n) => `${stepsDir}/${n}`),
      `${here}../ssh/session.ts`,
      `${here}../ssh/upload.ts`,
      `${here}applied.ts`,
    ]) {
      h.update(path.slice(here.length))
        .update("\0")
        .update(await readFile(path))
        .update("\0");
    }
    return h.digest("hex").slice(0, 16);
  })();
  return codeVersion;
}
