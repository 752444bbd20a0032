/**
 * Start-time benchmark (not a test): how long lab-server and lab-agent take in a running lab's
 * guest, from process start to serving, for the build installed on the node ("installed") and the
 * build of this checkout ("this tree"), side by side in one run.
 *
 *   npx tsx bench/server-start.ts --lab NAME [--node master-1] [--rounds 2]
 *   npx tsx bench/server-start.ts -f examples/one-master.yaml
 *   npx tsx bench/server-start.ts --lab NAME --baseline /path/to/other/checkout --no-unit-restart
 *
 * --baseline DIR: the "installed" column is DIR's build instead (bundled from that checkout and
 * uploaded beside this tree's), e.g. main before a start-time change. --no-unit-restart skips the
 * restart of the installed unit (for a lab another run is using). Rounds alternate the builds;
 * this tree's first round is its cold start (no V8 code cache in the guest yet), printed apart.
 *
 * Needs a lab that `lab up` brought up (a master with lab-server and lab-agent installed). The
 * bench uploads this tree's bundles beside the installed ones (/opt/lab/lib/*.bench.mjs), then on
 * the node, alternating the two builds:
 * - lab-server with the unit's own flags on other ports (API +100, health +100, no control loops):
 *   the time until its health port accepts a connection ("listening") and until /readyz is 200
 *   ("ready");
 * - lab-agent: the time to load the bundle (`--help`): its first act is to listen;
 * - `systemctl restart lab-server` of the installed unit, to "listening" in its journal.
 * Prints one row per build and the ratio installed / this tree.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { buildLabExecutables } from "../bootstrap/artifacts.ts";
import { SshSession } from "../ssh/session.ts";
import { resolveLabName } from "../cli/commands/lab-name.ts";
import { findMachine } from "../cli/commands/ssh.ts";
import { HOST_PATHS } from "../templates/paths.ts";

const { values } = parseArgs({
  options: {
    lab: { type: "string" },
    file: { type: "string", short: "f" },
    node: { type: "string", default: "master-1" },
    rounds: { type: "string", default: "2" },
    baseline: { type: "string" },
    "no-unit-restart": { type: "boolean", default: false },
  },
});

const usage = `usage: npx tsx bench/server-start.ts --lab NAME [--node master-1] [--rounds 2]
No running lab found. Bring one up first (the smallest: a 1-master topology), e.g.
  lab image build && lab up -f examples/one-master.yaml
then run this again with -f examples/one-master.yaml (or --lab one-master), and \`lab down\` after.`;

let found: Awaited<ReturnType<typeof findMachine>>;
try {
  found = await findMachine(await resolveLabName(values.lab, values.file), values.node!);
} catch (err) {
  console.error(`${(err as Error).message}\n\n${usage}`);
  process.exit(2);
}

/** The measuring script run on the node: prints `RESULT <what> <build> <seconds>` lines. */
const script = (rounds: number, base: string, unitRestart: boolean) => String.raw`
set -u
unit=${HOST_PATHS.unitDir}/lab-server.service
args=$(sed -n 's/^ExecStart=[^ ]* //p' $unit | tr ' ' '\n' | grep -v -e '^--kubeconfig=' -e '^--cluster-cidr=' -e '^--node-cidr-mask-size=' -e '^--pod-eviction-timeout=')
sp=$(echo "$args" | sed -n 's/^--secure-port=//p'); hp=$(echo "$args" | sed -n 's/^--health-port=//p')
args=$(echo "$args" | sed -e "s/^--secure-port=.*/--secure-port=$((sp+100))/" -e "s/^--health-port=.*/--health-port=$((hp+100))/")
bhp=$((hp+100))
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; } # no bc in the image
accepts() { (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; }
ready() { [[ $( (exec 3<>/dev/tcp/127.0.0.1/$1; printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3; read -r -t 5 s <&3; echo "$s") 2>/dev/null) == *" 200 "* ]]; }
server() { # $1 build label, $2 bundle
  t0=$(now)
  ${HOST_PATHS.bin}/node $2 $args >/tmp/bench-server.log 2>&1 &
  pid=$!
  end=$(( $(date +%s) + 300 ))
  until accepts $bhp; do sleep 0.05; [ $(date +%s) -gt $end ] && break; done
  echo "RESULT server-listening $1 $(since $t0)"
  until ready $bhp; do sleep 0.1; [ $(date +%s) -gt $end ] && break; done
  echo "RESULT server-ready $1 $(since $t0)"
  kill $pid; wait $pid 2>/dev/null
}
agent() {
  t0=$(now); ${HOST_PATHS.bin}/node $2 --help >/dev/null 2>&1
  echo "RESULT agent-load $1 $(since $t0)"
}
for i in $(seq ${rounds}); do
  server installed ${HOST_PATHS.lib}/lab-server${base}.mjs
  server this-tree ${HOST_PATHS.lib}/lab-server.bench.mjs
  agent installed ${HOST_PATHS.lib}/lab-agent${base}.mjs
  agent this-tree ${HOST_PATHS.lib}/lab-agent.bench.mjs
done
echo "RESULT guest-load - $(cut -d' ' -f1 /proc/loadavg)"
${unitRestart ? "" : "exit 0"}
since=$(date '+%Y-%m-%d %H:%M:%S'); t0=$(now)
systemctl restart lab-server
end=$(( $(date +%s) + 300 ))
until journalctl -u lab-server --since "$since" -o cat | grep -q 'listening on'; do sleep 0.2; [ $(date +%s) -gt $end ] && break; done
echo "RESULT unit-restart-listening installed $(since $t0)"
`;

const out = await mkdtemp(join(tmpdir(), "lab-bench-start-"));
const session = await SshSession.connect(found.machine, { timeoutMs: 60_000 });
try {
  const built = await buildLabExecutables(resolve(import.meta.dirname, ".."), join(out, "tree"));
  // The baseline checkout bundles itself with its own bootstrap/artifacts.ts (its own layout).
  const baseline = values.baseline
    ? await (
        (await import(resolve(values.baseline, "bootstrap/artifacts.ts"))) as {
          buildLabExecutables: typeof buildLabExecutables;
        }
      ).buildLabExecutables(resolve(values.baseline), join(out, "base"))
    : undefined;
  const { readFile } = await import("node:fs/promises");
  // Every file of a build in lib/ (a loader and its bundle, or one bundle), under a bench name.
  const libFiles = (a: (typeof built)["lab-server"], tag: string) =>
    a.files
      .filter((f) => f.remote.startsWith(`${HOST_PATHS.lib}/`))
      .map((f) => ({ local: f.local, remote: f.remote.replace(/\.(mjs|cjs)$/, `.${tag}.$1`) }));
  const uploads = (["lab-server", "lab-agent"] as const).flatMap((name) => [
    ...libFiles(built[name], "bench"),
    ...(baseline ? libFiles(baseline[name], "base") : []),
  ]);
  await session.uploadMany(
    await Promise.all(
      uploads.map(async (u) => ({
        source: { data: await readFile(u.local) },
        remotePath: u.remote,
        mode: 0o644,
        owner: "root:root",
      })),
    ),
  );
  const rounds = Math.max(1, Number(values.rounds));
  const r = await session.sudo("bash -s", {
    stdin: script(rounds, baseline ? ".base" : "", !values["no-unit-restart"]),
    timeoutMs: 60 * 60_000,
  });
  const rows = new Map<string, Map<string, number[]>>();
  let load = "";
  for (const line of r.stdout.split("\n")) {
    const m = /^RESULT (\S+) (\S+) ([\d.]+)$/.exec(line.trim());
    if (!m) continue;
    if (m[1] === "guest-load") load = m[3]!;
    else {
      const byBuild = rows.get(m[1]!) ?? new Map<string, number[]>();
      byBuild.set(m[2]!, [...(byBuild.get(m[2]!) ?? []), Number(m[3])]);
      rows.set(m[1]!, byBuild);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const first = values.baseline ? "baseline" : "installed";
  console.log(`node ${found.machine.name}, ${rounds} rounds, guest load ${load} at the end`);
  console.log(`every round, seconds: ${first} | this tree`);
  for (const [what, byBuild] of rows)
    console.log(
      `  ${what.padEnd(22)}  ${(byBuild.get("installed") ?? []).join(" ")} | ${(byBuild.get("this-tree") ?? []).join(" ")}`,
    );
  console.log(`what                    ${first.padStart(9)}   this tree   ${first}/this tree   (medians)`);
  for (const [what, byBuild] of rows) {
    const a = byBuild.get("installed");
    const b = byBuild.get("this-tree");
    const fmt = (xs?: number[]) => (xs ? `${median(xs).toFixed(1)} s`.padStart(9) : "        -");
    const ratio = a && b ? (median(a) / median(b)).toFixed(2) : "-";
    console.log(`${what.padEnd(22)}  ${fmt(a)}   ${fmt(b)}   ${ratio}`);
  }
  if (r.code !== 0 || rows.size === 0)
    console.error(`exit ${r.code}:\n${(r.stdout + r.stderr).trim().split("\n").slice(-10).join("\n")}`);
} finally {
  session.close();
  await rm(out, { recursive: true, force: true });
}
