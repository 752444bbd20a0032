/**
 * What every bootstrap step works with: the BootstrapContext plus one SSH session per machine
 * (opened lazily, pinned host key), the node's facts from one probe, and helpers that install files
 * only when their bytes differ. A node whose result still stands is skipped without a round trip.
 */
import type { Machine } from "../../provisioners/provisioner.ts";
import type { JumpPool } from "../../ssh/jump.ts";
import type { LabDialer } from "../../ssh/dialer.ts";
import type { PlannedNode } from "../../topology/plan.ts";
import type { BootstrapContext } from "../index.ts";
import {
  fingerprintOf,
  renderMarker,
  staleReason,
  writeMarkerCommand,
  type NodeFacts,
  type NodeWork,
} from "../applied.ts";
import { SshSession, shq } from "../../ssh/session.ts";
import { HOST_PATHS } from "../../templates/paths.ts";
import { failedEvent } from "../../topology/progress.ts";

export interface StepOutcome {
  /** True when the step changed something on a machine or in the state. */
  changed: boolean;
  message?: string;
  /**
   * The step only verifies (wait-ready, the VIP of one master): reported done with its message, not
   * "unchanged", though it changes nothing (a second `lab up` still says nothing changed).
   */
  checkOnly?: boolean;
}

export class Sessions {
  private readonly open = new Map<string, Promise<SshSession>>();
  constructor(
    private readonly signal?: AbortSignal,
    /** Jump connections shared by every session (and the dialer) of this run. */
    private readonly jumps?: JumpPool,
  ) {}

  get(machine: Machine): Promise<SshSession> {
    let s = this.open.get(machine.name);
    if (!s) {
      s = SshSession.connect(machine, { signal: this.signal, ...(this.jumps ? { jumps: this.jumps } : {}) });
      // A failed connect is not cached: the next step may try again.
      s.catch(() => this.open.delete(machine.name));
      this.open.set(machine.name, s);
    }
    return s;
  }

  async closeAll(): Promise<void> {
    for (const s of this.open.values()) (await s.catch(() => undefined))?.close();
    this.open.clear();
  }
}

export interface StepContext extends BootstrapContext {
  sessions: Sessions;
  /** TCP from the lab host to the lab network (API checks): direct, or through the machines' jump. */
  dialer: LabDialer;
  machine(name: string): Machine;
  planned(name: string): PlannedNode;
  /** What the node's probe found at the start of the run (one SSH exec per node, cached). */
  facts(m: Machine): Promise<NodeFacts>;
  /** The version of the step code, part of every fingerprint. */
  codeVersion(): Promise<string>;
}

/** One file on a machine: bytes, mode and owner. */
export interface RemoteFile {
  path: string;
  data: string | Buffer;
  mode?: number;
  owner?: string;
}

/** Installs files as root in a constant number of round trips; returns how many actually changed. */
export async function installFiles(
  s: SshSession,
  files: RemoteFile[],
  signal?: AbortSignal,
): Promise<number> {
  const uploaded = await s.uploadMany(
    files.map((f) => ({
      source: { data: f.data },
      remotePath: f.path,
      mode: f.mode ?? 0o644,
      owner: f.owner ?? "root:root",
    })),
    { signal },
  );
  return uploaded.length;
}

/**
 * A shell line that reloads the service manager only when `unit`'s files changed since it loaded
 * them (NeedDaemonReload; an unmasked unit counts). A unit it never loaded is read from disk when
 * it is started, with no reload. A reload (generators, every unit file) is the slowest thing
 * systemctl does: ~5 s measured in a busy nspawn machine, 30 s at load 60, most of a step's time.
 */
export function reloadIfNeeded(unit: string): string {
  const u = shq(unit);
  return `[ "$(systemctl show -p NeedDaemonReload --value ${u} 2>/dev/null)" != yes ] || systemctl daemon-reload`;
}

/**
 * A shell snippet that disables and masks a distribution unit that would hold what lab's own unit
 * needs (a port), and records it in masked-units so `lab down` unmasks it. Does nothing when the
 * unit is absent or already masked.
 */
export function maskDistroUnit(unit: string): string {
  return `if systemctl cat ${unit} >/dev/null 2>&1 && [ "$(systemctl is-enabled ${unit} 2>/dev/null)" != masked ]; then
  systemctl disable --now ${unit} >/dev/null 2>&1 || true
  systemctl mask ${unit} >/dev/null
  mkdir -p ${HOST_PATHS.etc} && echo ${unit} >> ${HOST_PATHS.etc}/masked-units
fi`;
}

/**
 * Makes `unit` enabled and running; restarts it only when its unit file or inputs changed.
 * `--no-block`: etcd is Type=notify and is not "started" until its peers are up. Resolves true
 * when it (re)started the unit. `enable --no-reload`: plain `systemctl enable` reloads the manager
 * by itself, even when nothing changes; the reload happens only when the unit's files need it.
 */
export async function ensureUnitRunning(s: SshSession, unit: string, changed: boolean): Promise<boolean> {
  const u = shq(unit);
  if (changed) {
    await s.run(
      `${reloadIfNeeded(unit)}; systemctl enable --no-reload ${u} && systemctl restart --no-block ${u}`,
      {
        root: true,
        timeoutMs: 300_000,
      },
    );
    return true;
  }
  const out = await s.run(
    `systemctl is-enabled --quiet ${u} || systemctl enable --no-reload ${u} >/dev/null 2>&1; systemctl is-active --quiet ${u} || { ${reloadIfNeeded(unit)}; systemctl start --no-block ${u} && echo started; }`,
    { root: true, timeoutMs: 300_000 },
  );
  return out.trim() === "started";
}

/** What one node's part of a step does, split so a rerun can skip it when its result still stands. */
export interface NodeApply {
  /** What the step puts on the node (from the plan, the lab state and the node's facts). */
  work(m: Machine, facts: NodeFacts): Promise<NodeWork>;
  /** A check from the lab host beyond the node's facts (e.g. /readyz); a reason when it fails. */
  unhealthy?(m: Machine): Promise<string | undefined>;
  /** Applies `work` on the node; resolves true when it changed something. Must be rerunnable. */
  apply(m: Machine, s: SshSession, work: NodeWork, facts: NodeFacts): Promise<boolean>;
}

/**
 * Runs a step on each machine in parallel, one progress line per node; fails after all finished.
 * A node whose marker shows the same fingerprint and whose facts hold is skipped ("unchanged")
 * without another SSH round trip; otherwise the step runs (the progress line says why) and its
 * marker is written last. Resolves with the nodes where the step ran and where it changed something.
 */
export async function applyOnNodes(
  ctx: StepContext,
  stepId: string,
  machines: Machine[],
  node: NodeApply,
): Promise<{ ran: number; changed: number }> {
  const marker = stepId.split(".")[0]!;
  const version = await ctx.codeVersion();
  const results = await Promise.allSettled(
    machines.map(async (m) => {
      const started = Date.now();
      try {
        const facts = await ctx.facts(m);
        const work = await node.work(m, facts);
        const fp = fingerprintOf(marker, version, work);
        const stale =
          staleReason(marker, fp, work, facts) ?? (node.unhealthy ? await node.unhealthy(m) : undefined);
        if (!stale) {
          ctx.reporter.event({
            step: stepId,
            node: m.name,
            state: "skipped",
            message: "unchanged",
            elapsedMs: 0,
          });
          return { ran: false, changed: false };
        }
        ctx.reporter.event({ step: stepId, node: m.name, state: "start", message: stale });
        const s = await ctx.sessions.get(m);
        const changed = await node.apply(m, s, work, facts);
        await s.run(writeMarkerCommand(marker, renderMarker(fp, work)), {
          root: true,
          what: `recording that ${marker} was applied`,
          signal: ctx.signal,
        });
        ctx.reporter.event({
          step: stepId,
          node: m.name,
          state: changed ? "done" : "skipped",
          message: changed ? undefined : "unchanged",
          elapsedMs: Date.now() - started,
        });
        return { ran: true, changed };
      } catch (err) {
        ctx.reporter.event(failedEvent(stepId, m.name, started, err));
        throw err;
      }
    }),
  );
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
  const done = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  return { ran: done.filter((d) => d.ran).length, changed: done.filter((d) => d.changed).length };
}
