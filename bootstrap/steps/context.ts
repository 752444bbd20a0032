/**
 * What every bootstrap step works with: the BootstrapContext plus one SSH session per machine
 * (opened lazily, pinned host key) and helpers that install files only when their bytes differ, so a
 * rerun uploads nothing, restarts nothing, and says so.
 */
import type { Machine } from "../../provisioners/provisioner.ts";
import type { PlannedNode } from "../../topology/plan.ts";
import type { BootstrapContext } from "../index.ts";
import { SshSession, shq } from "../ssh.ts";

export interface StepOutcome {
  /** True when the step changed something on a machine or in the state. */
  changed: boolean;
  message?: string;
}

export class Sessions {
  private readonly open = new Map<string, Promise<SshSession>>();
  constructor(private readonly signal?: AbortSignal) {}

  get(machine: Machine): Promise<SshSession> {
    let s = this.open.get(machine.name);
    if (!s) {
      s = SshSession.connect(machine, { signal: this.signal });
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
  machine(name: string): Machine;
  planned(name: string): PlannedNode;
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
 * Makes `unit` enabled and running; restarts it only when its unit file or inputs changed.
 * `--no-block`: etcd is Type=notify and is not "started" until its peers are up.
 */
export async function ensureUnitRunning(s: SshSession, unit: string, changed: boolean): Promise<void> {
  const u = shq(unit);
  if (changed)
    await s.run(`systemctl daemon-reload && systemctl enable ${u} && systemctl restart --no-block ${u}`, {
      root: true,
      timeoutMs: 300_000,
    });
  else
    await s.run(
      `systemctl is-enabled --quiet ${u} || systemctl enable ${u} >/dev/null 2>&1; systemctl is-active --quiet ${u} || systemctl start --no-block ${u}`,
      { root: true, timeoutMs: 300_000 },
    );
}

/** Runs `fn` for each machine in parallel, one progress line per node; fails after all finished. */
export async function forEachMachine(
  ctx: StepContext,
  stepId: string,
  machines: Machine[],
  fn: (m: Machine, s: SshSession) => Promise<boolean>,
): Promise<number> {
  const results = await Promise.allSettled(
    machines.map(async (m) => {
      const started = Date.now();
      ctx.reporter.event({ step: stepId, node: m.name, state: "start" });
      try {
        const changed = await fn(m, await ctx.sessions.get(m));
        ctx.reporter.event({
          step: stepId,
          node: m.name,
          state: changed ? "done" : "skipped",
          message: changed ? undefined : "unchanged",
          elapsedMs: Date.now() - started,
        });
        return changed;
      } catch (err) {
        ctx.reporter.event({
          step: stepId,
          node: m.name,
          state: "failed",
          message: err instanceof Error ? err.message : String(err),
          elapsedMs: Date.now() - started,
        });
        throw err;
      }
    }),
  );
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return results.filter((r) => r.status === "fulfilled" && r.value).length;
}
