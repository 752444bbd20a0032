/**
 * The cluster bootstrap over SSH: an ordered list of named, idempotent steps (pki, etcd,
 * control-plane, vip, join-nodes, wait-ready) run against the machines a provisioner produced.
 * It never asks whether a machine is a VM or bare metal. Each step reports whether it changed
 * anything, so a second `lab up` on a running lab says "unchanged" everywhere; one probe per node
 * (applied.ts) lets a step skip a node whose result still stands without further round trips.
 */
import type { Machine } from "../provisioners/provisioner.ts";
import { LabError } from "../topology/errors.ts";
import type { Plan } from "../topology/plan.ts";
import type { Reporter } from "../topology/progress.ts";
import type { LabState } from "../topology/state.ts";
import { bootstrapCodeVersion, parseProbe, probeScript, type NodeFacts } from "./applied.ts";
import { labDialer } from "../ssh/dialer.ts";
import { Sessions, type StepContext, type StepOutcome } from "./steps/context.ts";
import { clockStep } from "./steps/clock.ts";
import { controlPlaneStep, executable } from "./steps/control-plane.ts";
import { etcdStep } from "./steps/etcd.ts";
import { joinNodesStep, nodeImages, startEarlyRuntime } from "./steps/join-nodes.ts";
import { pkiStep, startEarlyPki } from "./steps/pki.ts";
import { vipStep } from "./steps/vip.ts";
import { waitReadyStep } from "./steps/wait-ready.ts";

export interface BootstrapContext {
  plan: Plan;
  state: LabState;
  machines: Machine[];
  reporter: Reporter;
  signal?: AbortSignal;
  /** How long wait-ready waits for every node Ready (`lab up --wait`); default 300 s. */
  waitReadyTimeoutMs?: number;
}

export interface BootstrapStep {
  /** Stable id shown in progress and used in state (e.g. `etcd`). */
  id: string;
  title: string;
  run(ctx: StepContext): Promise<StepOutcome>;
  /** Local work the step will need (bundles, archives), started when the bootstrap starts. */
  prepare?(ctx: StepContext): Promise<unknown>;
}

export const BOOTSTRAP_STEPS: BootstrapStep[] = [
  { id: "pki", title: "certificates (lab CA, etcd CA, servers, clients)", run: pkiStep },
  { id: "clock", title: "clocks set from the host, chrony among the nodes", run: clockStep },
  { id: "etcd", title: "etcd cluster (TLS), healthy quorum", run: etcdStep },
  {
    id: "control-plane",
    title: "lab-server on the masters",
    run: controlPlaneStep,
    prepare: (ctx) => executable(ctx, "lab-server"),
  },
  { id: "vip", title: "API virtual IP (keepalived)", run: vipStep },
  {
    id: "join-nodes",
    title: "lab-agent on every node",
    run: joinNodesStep,
    prepare: (ctx) => Promise.all([executable(ctx, "lab-agent"), nodeImages(ctx), startEarlyRuntime(ctx)]),
  },
  { id: "wait-ready", title: "every node Ready", run: (ctx) => waitReadyStep(ctx, ctx.waitReadyTimeoutMs) },
];

/**
 * The bootstrap's local work that needs only the plan and the lab state (certificates, bundles,
 * image archives), started while the provisioner boots the machines: on a first `lab up` it is off
 * the critical path. The steps take the results (memoized per lab state); failures surface there.
 */
export function prepareLocal(ctx: Pick<BootstrapContext, "plan" | "state">): void {
  startEarlyPki(ctx);
  for (const p of [executable(ctx, "lab-server"), executable(ctx, "lab-agent"), nodeImages(ctx)])
    p.catch(() => undefined);
}

export interface BootstrapRecord {
  steps: Record<string, { finishedAt: string; changed: boolean; message?: string }>;
}

/** One SSH exec on the node: what earlier runs applied there and whether it still stands. */
async function probeNode(ctx: BootstrapContext, sessions: Sessions, m: Machine): Promise<NodeFacts> {
  const s = await sessions.get(m);
  const sentAt = Date.now();
  const out = await s.run(probeScript(), {
    root: true,
    what: "reading what earlier runs applied (is sudo allowed without a password?)",
    signal: ctx.signal,
  });
  const facts = parseProbe(out, sentAt, Date.now());
  ctx.reporter.event({
    step: "node.probe",
    node: m.name,
    state: "done",
    message: facts.applied.size
      ? `applied: ${[...facts.applied.keys()].sort().join(", ")}`
      : "nothing applied yet",
    elapsedMs: Date.now() - sentAt,
  });
  return facts;
}

export async function bootstrapCluster(
  ctx: BootstrapContext,
  steps = BOOTSTRAP_STEPS,
): Promise<{ changed: boolean }> {
  const byName = new Map(ctx.machines.map((m) => [m.name, m]));
  const missing = ctx.plan.nodes.filter((n) => !byName.has(n.name)).map((n) => n.name);
  if (missing.length) {
    throw new LabError({
      code: "MACHINES_MISSING",
      what: `no machine for ${missing.join(", ")}`,
      source: "internal",
    });
  }
  // One login per hypervisor for the whole run: the sessions and the API checks share it.
  const dialer = labDialer(ctx.machines);
  const sessions = new Sessions(ctx.signal, dialer.jumps);
  const probes = new Map<string, Promise<NodeFacts>>();
  const sctx: StepContext = {
    ...ctx,
    sessions,
    dialer,
    machine: (name) => byName.get(name)!,
    planned: (name) => ctx.plan.nodes.find((n) => n.name === name)!,
    facts(m) {
      let f = probes.get(m.name);
      if (!f) {
        f = probeNode(ctx, sessions, m);
        f.catch(() => probes.delete(m.name)); // a failed probe is retried by the next step
        probes.set(m.name, f);
      }
      return f;
    },
    codeVersion: bootstrapCodeVersion,
  };
  const record: BootstrapRecord = (await ctx.state.readJson<BootstrapRecord>("bootstrap.json")) ?? {
    steps: {},
  };
  let anyChange = false;
  // Bundling and archive builds run on the lab host while the first steps wait on SSH; a
  // failure surfaces in the step that needs the result.
  for (const s of steps) s.prepare?.(sctx).catch(() => undefined);
  try {
    for (const [i, s] of steps.entries()) {
      const id = `bootstrap.${s.id}`;
      const started = Date.now();
      ctx.reporter.event({ step: id, state: "start", message: `${i + 1}/${steps.length} ${s.title}` });
      let outcome: StepOutcome;
      try {
        outcome = await s.run(sctx);
      } catch (err) {
        ctx.reporter.event({
          step: id,
          state: "failed",
          message: (err as Error).message,
          elapsedMs: Date.now() - started,
        });
        throw err;
      }
      anyChange ||= outcome.changed;
      const done = outcome.changed || outcome.checkOnly;
      ctx.reporter.event({
        step: id,
        state: done ? "done" : "skipped",
        message: done ? outcome.message : `unchanged${outcome.message ? `: ${outcome.message}` : ""}`,
        elapsedMs: Date.now() - started,
      });
      record.steps[s.id] = {
        finishedAt: new Date().toISOString(),
        changed: outcome.changed,
        ...(outcome.message ? { message: outcome.message } : {}),
      };
      await ctx.state.writeJson("bootstrap.json", record);
    }
  } finally {
    await sessions.closeAll();
    await dialer.close();
  }
  if (!anyChange) ctx.reporter.notice("the cluster already matched the topology: nothing changed");
  return { changed: anyChange };
}
