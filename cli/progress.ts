/**
 * Renders the engine's step events: listr2 on a TTY (one task per node plus one for the lab),
 * plain lines on stderr otherwise, JSON lines on stdout with --json.
 */
import { Listr, type ListrTaskWrapper } from "listr2";
import { MACHINE_READY_STEP } from "../provisioners/provisioner.ts";
import type { Reporter, StepEvent } from "../topology/progress.ts";

export interface CliReporter extends Reporter {
  /** Stops the renderer; failed tasks stay marked failed. */
  close(): Promise<void>;
}

export interface ReporterOptions {
  json?: boolean;
  /** Node names: each gets its own line on a TTY. */
  nodes?: string[];
  /** Forces the plain renderer (default: plain when stderr is not a TTY). */
  tty?: boolean;
}

export function createReporter(opts: ReporterOptions = {}): CliReporter {
  if (opts.json) return jsonReporter();
  const tty = opts.tty ?? Boolean(process.stderr.isTTY);
  return tty ? listrReporter(opts.nodes ?? []) : plainReporter();
}

/** The final result of a streaming command under --json: one line, like the events before it. */
export function printResultLine(value: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify({ type: "result", ...value }) + "\n");
}

function describe(e: StepEvent): string {
  const secs = e.elapsedMs !== undefined ? ` (${(e.elapsedMs / 1000).toFixed(1)} s)` : "";
  const msg = e.message ? `: ${e.message}` : "";
  return `${e.step} ${e.state}${secs}${msg}`;
}

function jsonReporter(): CliReporter {
  const write = (o: unknown) => process.stdout.write(JSON.stringify(o) + "\n");
  return {
    event: (e) => write({ type: "step", time: new Date().toISOString(), ...e }),
    notice: (message) => write({ type: "notice", time: new Date().toISOString(), message }),
    close: async () => {},
  };
}

function plainReporter(): CliReporter {
  return {
    event: (e) => process.stderr.write(`${e.node ? `[${e.node}] ` : ""}${describe(e)}\n`),
    notice: (message) => process.stderr.write(`notice: ${message}\n`),
    close: async () => {},
  };
}

type Task = ListrTaskWrapper<unknown, never, never>;

function listrReporter(nodes: string[]): CliReporter {
  const LAB = "lab";
  const names = [LAB, ...nodes];
  const handles = new Map<string, { task: Task; resolve: () => void; reject: (e: Error) => void }>();
  const pending = new Map<string, ((t: Task) => void)[]>();
  const finished = new Set<string>();
  const withTask = (name: string, fn: (t: Task) => void) => {
    const h = handles.get(name);
    if (h) fn(h.task);
    else pending.set(name, [...(pending.get(name) ?? []), fn]);
  };
  const list = new Listr(
    names.map((name) => ({
      title: name,
      task: (_ctx: unknown, task: Task) =>
        new Promise<void>((resolve, reject) => {
          handles.set(name, { task, resolve, reject });
          for (const fn of pending.get(name) ?? []) fn(task);
          pending.delete(name);
          if (finished.has(name)) resolve();
        }),
      rendererOptions: { persistentOutput: true, outputBar: 3 },
    })),
    { concurrent: true, exitOnError: false, renderer: "default", rendererOptions: { collapseErrors: false } },
  );
  const running = list.run().catch(() => undefined);
  const settle = (name: string, err?: Error) => {
    finished.add(name);
    const h = handles.get(name);
    if (!h) return;
    if (err) h.reject(err);
    else h.resolve();
  };
  return {
    event(e) {
      const name = e.node && nodes.includes(e.node) ? e.node : LAB;
      withTask(name, (t) => {
        t.title = `${name}: ${e.step}${e.message && e.state !== "failed" ? ` (${e.message})` : ""}`;
        if (e.state === "done" && e.elapsedMs !== undefined)
          t.output = `${e.step} done in ${(e.elapsedMs / 1000).toFixed(1)} s`;
      });
      if (e.state === "failed" && !finished.has(name))
        settle(name, new Error(`${e.step}: ${e.message ?? "failed"}`));
      if (name !== LAB && e.step === MACHINE_READY_STEP && (e.state === "done" || e.state === "skipped")) {
        withTask(name, (t) => (t.title = `${name}: ready`));
        settle(name);
      }
    },
    notice(message) {
      withTask(LAB, (t) => (t.output = message));
    },
    async close() {
      if (!finished.has(LAB)) withTask(LAB, (t) => (t.title = `${LAB}: done`));
      for (const n of names) if (!finished.has(n)) settle(n);
      await running;
    },
  };
}
