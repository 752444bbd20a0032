/**
 * The engine never prints. Long work (provisioning, bootstrap, image builds) reports step events
 * through a Reporter; the CLI renders them with listr2 on a TTY, as plain lines otherwise, or as
 * JSON lines with --json. Tests use a RecordingReporter and assert on the events.
 */
export type StepState = "start" | "progress" | "done" | "skipped" | "failed";

export interface StepEvent {
  /** Stable step id, e.g. `image.debootstrap`, `vm.boot`, `etcd.health`. */
  step: string;
  /** The node this event concerns, when it concerns one. */
  node?: string;
  state: StepState;
  message?: string;
  /** Milliseconds since the step started (set on done/failed). */
  elapsedMs?: number;
}

export interface Reporter {
  event(e: StepEvent): void;
  /** A one-line notice that is not a step (e.g. "KVM unusable, using TCG: ~5x slower"). */
  notice(message: string): void;
}

export class RecordingReporter implements Reporter {
  readonly events: StepEvent[] = [];
  readonly notices: string[] = [];
  event(e: StepEvent): void {
    this.events.push(e);
  }
  notice(message: string): void {
    this.notices.push(message);
  }
}

export const silentReporter: Reporter = { event() {}, notice() {} };

/** Runs `fn` as a named step: emits start, then done (with elapsed time) or failed, and rethrows. */
export async function step<T>(
  reporter: Reporter,
  id: string,
  fn: () => Promise<T>,
  opts: { node?: string; message?: string } = {},
): Promise<T> {
  const started = Date.now();
  reporter.event({ step: id, node: opts.node, state: "start", message: opts.message });
  try {
    const result = await fn();
    reporter.event({ step: id, node: opts.node, state: "done", elapsedMs: Date.now() - started });
    return result;
  } catch (err) {
    reporter.event(failedEvent(id, opts.node, started, err));
    throw err;
  }
}

/** The `failed` event of a step that started at `started`, with the error's message. */
export function failedEvent(
  step: string,
  node: string | undefined,
  started: number,
  err: unknown,
): StepEvent {
  return {
    step,
    node,
    state: "failed",
    message: err instanceof Error ? err.message : String(err),
    elapsedMs: Date.now() - started,
  };
}
