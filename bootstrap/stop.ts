/**
 * `lab stop`'s order and its service stops over SSH. Workers first (nothing of the control plane
 * depends on them), then the masters' agents, VIP and API servers, and etcd last, once nothing
 * writes to it: every member stops with the same committed data on disk, so the next start
 * needs no recovery. Where the lab owns the machines, each group is powered off after its
 * services are stopped; on bare metal the services are stopped and the hosts keep running.
 */
import { LabError } from "../topology/errors.ts";
import type { Plan } from "../topology/plan.ts";
import type { Machine } from "../provisioners/provisioner.ts";
import { SshSession, shq } from "../ssh/session.ts";
import { NODE_CONTAINERD } from "../templates/lab-agent.ts";

export type StopAction =
  | {
      kind: "services";
      step: string;
      nodes: string[];
      units: string[];
      /**
       * Then the pods' containers (SIGTERM, a grace period, SIGKILL), before a power-off: a
       * container's PID 1 ignores the machine init's SIGTERM, which would hold the shutdown for
       * its whole stop timeout (90 s measured on nspawn).
       */
      pods?: boolean;
    }
  | { kind: "power-off"; step: string; nodes: string[] };

/** The units stopped on workers, in order. */
export const WORKER_UNITS = ["lab-agent.service", "lab-chrony.service"];
/** The units stopped on masters before etcd, in order: the agent, the VIP, then the API server. */
export const MASTER_UNITS = [
  "lab-agent.service",
  "lab-keepalived.service",
  "lab-server.service",
  "lab-chrony.service",
];
export const ETCD_UNITS = ["lab-etcd.service"];

/**
 * The ordered actions of `lab stop` (pure). `powerOff`: the provider can power its machines off
 * cleanly (not baremetal). Groups without nodes are left out.
 */
export function stopPlan(plan: Pick<Plan, "nodes">, opts: { powerOff: boolean }): StopAction[] {
  const workers = plan.nodes.filter((n) => n.role === "worker").map((n) => n.name);
  const masters = plan.nodes.filter((n) => n.role === "master").map((n) => n.name);
  const actions: StopAction[] = [
    { kind: "services", step: "stop.workers", nodes: workers, units: WORKER_UNITS, pods: opts.powerOff },
    ...(opts.powerOff ? [{ kind: "power-off" as const, step: "stop.power-off", nodes: workers }] : []),
    { kind: "services", step: "stop.masters", nodes: masters, units: MASTER_UNITS, pods: opts.powerOff },
    { kind: "services", step: "stop.etcd", nodes: masters, units: ETCD_UNITS },
    ...(opts.powerOff ? [{ kind: "power-off" as const, step: "stop.power-off", nodes: masters }] : []),
  ];
  return actions.filter((a) => a.nodes.length > 0);
}

/** Seconds a pod's containers get between SIGTERM and SIGKILL at `lab stop`. */
export const POD_GRACE_SECONDS = 10;

/**
 * The shell that stops `units` one after the other (a unit that does not exist is already
 * stopped), with `pods` then the pods' containers (SIGTERM, POD_GRACE_SECONDS, SIGKILL to all
 * their processes), and prints each unit's `systemctl is-active` answer, one line per unit, and
 * `pods N` with the containers still running (pure).
 */
export function stopUnitsScript(units: string[], opts: { pods?: boolean } = {}): string {
  const list = units.map(shq).join(" ");
  const ctr = `ctr --address ${NODE_CONTAINERD.socket} --namespace k8s.io`;
  const pods = opts.pods
    ? `
running() { [ -S ${NODE_CONTAINERD.socket} ] && ${ctr} tasks ls 2>/dev/null | awk '$3 == "RUNNING" {print $1}'; }
settle() { i=0; while [ -n "$(running)" ] && [ $i -lt $1 ]; do sleep 1; i=$((i+1)); done; }
for t in $(running); do ${ctr} tasks kill -s SIGTERM "$t" >/dev/null 2>&1 || true; done
settle ${POD_GRACE_SECONDS}
for t in $(running); do ${ctr} tasks kill -a -s SIGKILL "$t" >/dev/null 2>&1 || true; done
settle 10
echo "pods $(running | wc -l)"`
    : "";
  return `for u in ${list}; do systemctl stop "$u" >/dev/null 2>&1 || true; done${pods}
for u in ${list}; do echo "$u $(systemctl is-active "$u" 2>/dev/null || true)"; done`;
}

/** The number of pod containers `stopUnitsScript` found still running (pure; 0 without the line). */
export function podsStillRunning(output: string): number {
  const m = /^pods (\d+)$/m.exec(output);
  return m ? Number(m[1]) : 0;
}

/** The units of `stopUnitsScript`'s answer that are not stopped (pure): active, deactivating... */
export function unitsStillUp(units: string[], output: string): string[] {
  const state = new Map(
    output
      .split("\n")
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f.length >= 1 && f[0])
      .map((f) => [f[0]!, f[1] ?? ""]),
  );
  return units.filter((u) => {
    const s = state.get(u);
    // No answer for a unit: nothing says it stopped.
    return s === undefined || !["inactive", "failed", "unknown", ""].includes(s);
  });
}

/**
 * Stops `units` on one machine over SSH within `timeoutMs` (connecting included); throws a
 * LabError naming the node and the units still up, or what did not answer.
 */
export async function stopServices(
  machine: Machine,
  units: string[],
  opts: { timeoutMs: number; signal?: AbortSignal; pods?: boolean },
): Promise<void> {
  const started = Date.now();
  const s = await SshSession.connect(machine, {
    timeoutMs: Math.min(20_000, opts.timeoutMs),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  try {
    const left = Math.max(1000, opts.timeoutMs - (Date.now() - started));
    const r = await s.sudo(stopUnitsScript(units, { pods: opts.pods }), {
      timeoutMs: left,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    const up = unitsStillUp(units, r.stdout);
    const pods = podsStillRunning(r.stdout);
    if (pods > 0) up.push(`${pods} pod container(s)`);
    if (up.length)
      throw new LabError({
        code: "STOP_STUCK",
        what: `${up.join(", ")} still running on ${machine.name} after ${Math.round((Date.now() - started) / 1000)} s${r.stderr.trim() ? ` (${r.stderr.trim().split("\n")[0]})` : ""}`,
        where: machine.name,
        fix: up[0]!.endsWith(".service")
          ? `look at \`lab ssh ${machine.name} -- journalctl -u ${up[0]} -n 50\``
          : `look at \`lab ssh ${machine.name} -- sudo ctr -n k8s.io tasks ls\``,
        source: "host",
      });
  } finally {
    s.close();
  }
}
