/**
 * `lab-agent --hollow`: one hollow node (`--node-name N`) or many in one process
 * (`--hollow-count N --node-name-prefix P` → P1..PN). No containerd, no network programming: only
 * the API side of a node (see hollow.ts).
 */
import { Command, CommanderError } from "commander";
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { parse as parseYaml } from "yaml";
import { LabClient, readKubeconfig } from "../../api/client.ts";
import { parseQuantity } from "../../lib/quantity.ts";
import { parseLabels } from "../node-status.ts";
import { HollowNodes } from "./hollow.ts";

export const DEFAULT_CAPACITY = { cpu: "8", memory: "32Gi", pods: "110" };
export const DEFAULT_RUN_SECONDS = 5;

export interface HollowFlags {
  hollow: boolean;
  kubeconfig: string;
  nodeName?: string;
  hollowCount?: string;
  nodeNamePrefix: string;
  capacity: string;
  nodeLabels?: string;
  hollowRunSeconds: string;
  nodeLeaseRenewSeconds: string;
  nodeStatusReportSeconds: string;
  concurrency?: string;
}

export function hollowCommand(): Command {
  return new Command("lab-agent --hollow")
    .description(
      "hollow nodes (like kubemark/kwok): register Nodes, renew their Leases and report their pods Running without starting containers",
    )
    .option("--hollow", "run hollow nodes instead of the real agent")
    .requiredOption("--kubeconfig <path>", "credentials (a node's, or the admin's for many nodes)")
    .option("--node-name <name>", "the one hollow node's name (default: this host's name)")
    .option("--hollow-count <n>", "run N hollow nodes in this process, named <prefix>1..<prefix>N")
    .option("--node-name-prefix <prefix>", "name prefix with --hollow-count", "hollow-")
    .option(
      "--capacity <list>",
      "capacity (and allocatable) of every node: cpu=N,memory=Q,pods=N",
      "cpu=8,memory=32Gi,pods=110",
    )
    .option("--node-labels <labels>", "extra labels for every node: key=value,...")
    .option(
      "--hollow-run-seconds <s>",
      "how long a run-to-completion pod (restartPolicy Never/OnFailure) runs before it is Succeeded",
      String(DEFAULT_RUN_SECONDS),
    )
    .option("--node-lease-renew-seconds <s>", "how often each node renews its Lease", "10")
    .option(
      "--node-status-report-seconds <s>",
      "how often each node re-posts its status besides the Lease",
      "60",
    )
    .option(
      "--concurrency <n>",
      "heartbeat and registration calls in flight at most (default: max(32, nodes / lease period in s))",
    );
}

function positive(flag: string, v: string, integer = false): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n)))
    throw new Error(`${flag} must be a positive ${integer ? "integer" : "number"}, got "${v}"`);
  return n;
}

/** `cpu=8,memory=32Gi,pods=110` (any subset; the rest from the defaults). */
export function parseCapacity(text: string): { cpu: string; memory: string; pods: string } {
  const out = { ...DEFAULT_CAPACITY };
  for (const part of text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)) {
    const m = /^(cpu|memory|pods)=(.+)$/.exec(part);
    if (!m) throw new Error(`--capacity: "${part}" is not cpu=N, memory=Q or pods=N`);
    const [key, value] = [m[1] as keyof typeof out, m[2]!];
    const q = parseQuantity(value);
    if (q === undefined || q <= 0 || (key === "pods" && !Number.isInteger(q)))
      throw new Error(`--capacity: ${key}=${value} is not a positive quantity`);
    out[key] = value;
  }
  return out;
}

/** The node names the flags ask for. */
export function hollowNodeNames(
  f: Pick<HollowFlags, "nodeName" | "hollowCount" | "nodeNamePrefix">,
): string[] {
  if (f.hollowCount === undefined) return [f.nodeName ?? hostname()];
  if (f.nodeName !== undefined)
    throw new Error("--node-name names one node, --hollow-count many (with --node-name-prefix): give one");
  const count = positive("--hollow-count", f.hollowCount, true);
  return Array.from({ length: count }, (_, i) => `${f.nodeNamePrefix}${i + 1}`);
}

/** The client of a kubeconfig, or an error that names --kubeconfig and what is wrong with it. */
async function loadClient(path: string, maxSockets: number): Promise<LabClient> {
  let doc: unknown;
  try {
    doc = parseYaml(await readFile(path, "utf8"));
  } catch (err) {
    throw new Error(`--kubeconfig ${path}: ${(err as Error).message}`);
  }
  if (!doc || typeof doc !== "object" || !("clusters" in doc))
    throw new Error(`--kubeconfig ${path} is not a kubeconfig (no clusters)`);
  try {
    return new LabClient({ ...(await readKubeconfig(path)), maxSockets });
  } catch (err) {
    throw new Error(`--kubeconfig ${path}: ${(err as Error).message}`);
  }
}

export async function hollowMain(argv: string[]): Promise<void> {
  const log = (msg: string): void => void process.stderr.write(`lab-agent (hollow): ${msg}\n`);
  const cmd = hollowCommand().exitOverride();
  try {
    cmd.parse(argv);
  } catch (err) {
    process.exit(err instanceof CommanderError ? err.exitCode : 1);
  }
  const f = cmd.opts<HollowFlags>();
  let nodes: HollowNodes;
  let client: LabClient;
  try {
    const names = hollowNodeNames(f);
    const settings = {
      nodeNames: names,
      capacity: parseCapacity(f.capacity),
      labels: parseLabels(f.nodeLabels ?? ""),
      runMs: positive("--hollow-run-seconds", f.hollowRunSeconds) * 1000,
      leaseRenewMs: positive("--node-lease-renew-seconds", f.nodeLeaseRenewSeconds) * 1000,
      statusReportMs: positive("--node-status-report-seconds", f.nodeStatusReportSeconds) * 1000,
      ...(f.concurrency !== undefined ? { concurrency: positive("--concurrency", f.concurrency, true) } : {}),
      log,
    };
    // A connection for every heartbeat in flight (the client's default pool of 64 would hold back
    // the ~100 lease writes/s of 1,000 nodes at 1 s per call), and room for pod status reports.
    const inFlight =
      settings.concurrency ?? Math.max(32, Math.ceil(names.length / (settings.leaseRenewMs / 1000)));
    client = await loadClient(f.kubeconfig, Math.max(64, inFlight + 32));
    nodes = new HollowNodes({ client, ...settings });
    log(
      names.length === 1
        ? `node ${names[0]}: registering`
        : `${names.length} nodes ${names[0]}..${names[names.length - 1]}: registering`,
    );
  } catch (err) {
    log(`fatal: ${(err as Error).message}`);
    process.exit(1);
  }
  const stop = new AbortController();
  const shutdown = (sig: string): void => {
    log(`${sig}: stopping (the Nodes stay; their Leases run out)`);
    stop.abort();
  };
  process.once("SIGTERM", () => shutdown("SIGTERM"));
  process.once("SIGINT", () => shutdown("SIGINT"));
  await nodes.run(stop.signal);
  client.close();
  process.exit(0);
}
