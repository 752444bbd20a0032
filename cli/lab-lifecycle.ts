/**
 * What `lab stop` and `lab start` do apart from argument parsing. Stop walks `stopPlan`'s order
 * (workers, masters, etcd last) with a deadline on every wait; start is `lab up`'s converge from
 * the recorded plan: the machines booted again, the bootstrap rerun (idempotent), every node Ready.
 */
import { ETCD_UNITS, stopPlan, stopServices, type StopAction } from "../bootstrap/stop.ts";
import { provisionerFor } from "../provisioners/index.ts";
import type { Machine, ProvisionContext, Provisioner } from "../provisioners/provisioner.ts";
import { LabError } from "../topology/errors.ts";
import type { Plan } from "../topology/plan.ts";
import { step, type Reporter } from "../topology/progress.ts";
import { LabState } from "../topology/state.ts";
import { converge, STOPPED_FILE, type ConvergeOptions, type UpResult } from "./lab-run.ts";

/** What `lab stop` recorded in the state (`stopped.json`). */
export interface StoppedRecord {
  at: string;
  /** baremetal: the services were stopped, the hosts keep running. */
  servicesOnly: boolean;
  /** What did not stop cleanly (forced power-offs, units that did not stop). */
  problems: string[];
}

export interface StopResult {
  plan: Plan;
  record: StoppedRecord;
  elapsedMs: number;
}

/** The recorded plan, or the error that says the lab was never created and how to create it. */
async function recordedPlan(state: LabState, command: string): Promise<Plan> {
  const p = await state.readJson<Plan>("plan.json");
  if (!p)
    throw new LabError({
      code: "LAB_NOT_CREATED",
      what: `lab ${state.name} was never created (no state in ${state.dir}); there is nothing to ${command}`,
      fix: "`lab up` creates it (with -f FILE for another topology than ./lab.yaml)",
    });
  return p;
}

/** The stop's deadline per wait: LAB_STOP_TIMEOUT seconds, else 120 s. */
export function stopTimeoutMs(): number {
  const s = Number(process.env.LAB_STOP_TIMEOUT);
  return (Number.isFinite(s) && s > 0 ? s : 120) * 1000;
}

export async function labStop(
  name: string,
  reporter: Reporter,
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<StopResult> {
  const started = Date.now();
  const state = new LabState(name);
  const plan = await recordedPlan(state, "stop");
  const timeoutMs = opts.timeoutMs ?? stopTimeoutMs();
  await state.lock("stop");
  try {
    const provisioner = provisionerFor(plan.provider.type);
    const ctx: ProvisionContext = { plan, state, reporter, ...(opts.signal ? { signal: opts.signal } : {}) };
    const running = new Set(
      (await provisioner.status(ctx)).filter((m) => m.state === "running").map((m) => m.name),
    );
    const machines = new Map(
      ((await state.readJson<Machine[]>("machines.json")) ?? []).map((m) => [m.name, m]),
    );
    const problems: string[] = [];
    for (const action of stopPlan(plan, { powerOff: provisioner.shutdown !== undefined }))
      await Promise.all(
        action.nodes.map((node) =>
          runAction(action, node, { ctx, provisioner, timeoutMs, running, machines, problems }),
        ),
      );
    const record: StoppedRecord = {
      at: new Date().toISOString(),
      servicesOnly: provisioner.shutdown === undefined,
      problems,
    };
    await state.writeJson(STOPPED_FILE, record);
    if (problems.length)
      throw new LabError({
        code: "STOP_UNCLEAN",
        what: `lab ${name} is stopped, but not cleanly:\n${problems.map((p) => "  " + p).join("\n")}`,
        fix: "`lab start` boots it again; etcd recovers from its write-ahead log",
        source: "host",
      });
    return { plan, record, elapsedMs: Date.now() - started };
  } finally {
    state.unlockSync();
  }
}

interface ActionContext {
  ctx: ProvisionContext;
  provisioner: Provisioner;
  timeoutMs: number;
  running: Set<string>;
  machines: Map<string, Machine>;
  problems: string[];
}

/** One node's part of one action, as a step; a failure is recorded and the stop goes on. */
async function runAction(action: StopAction, node: string, a: ActionContext): Promise<void> {
  const { reporter, signal } = a.ctx;
  const machine = a.machines.get(node);
  if (!a.running.has(node) || (action.kind === "services" && !machine)) {
    reporter.event({ step: action.step, node, state: "skipped", message: "not running" });
    return;
  }
  try {
    if (action.kind === "services") {
      await step(
        reporter,
        action.step,
        () =>
          stopServices(machine!, action.units, {
            timeoutMs: a.timeoutMs,
            ...(action.pods ? { pods: true } : {}),
            ...(signal ? { signal } : {}),
          }),
        {
          node,
          message:
            action.units === ETCD_UNITS
              ? "stopping etcd (nothing writes to it now)"
              : `stopping ${action.units.join(", ")}${action.pods ? ", then the pods' containers" : ""}`,
        },
      );
    } else {
      const r = await step(
        reporter,
        action.step,
        () => a.provisioner.shutdown!(a.ctx, node, { timeoutMs: a.timeoutMs }),
        {
          node,
          message: "clean power-off (init stops every unit)",
        },
      );
      if (!r.clean) {
        a.problems.push(`${node}: ${r.detail ?? "forced power-off"}`);
        reporter.notice(`${node}: ${r.detail ?? "forced power-off"}`);
      }
    }
  } catch (err) {
    a.problems.push(`${node}: ${err instanceof LabError ? err.what : String(err)}`);
  }
}

/** Boots a stopped lab from its recorded plan and converges it to Ready (as `lab up` would). */
export async function labStart(
  name: string,
  reporter: Reporter,
  signal?: AbortSignal,
  opts: ConvergeOptions = {},
): Promise<UpResult & { elapsedMs: number }> {
  const started = Date.now();
  const state = new LabState(name);
  const plan = await recordedPlan(state, "start");
  await state.lock("start");
  try {
    const r = await converge(plan, state, reporter, signal, opts);
    return { ...r, elapsedMs: Date.now() - started };
  } finally {
    state.unlockSync();
  }
}
