/**
 * A command's long run (`lab up`, `lab start`, `lab stop`) under Ctrl-C and SIGTERM: both abort
 * the signal handed to the run, the reporter is closed however it ends, and a run that failed
 * because it was interrupted is told as `interrupted()` says (what was left behind, what to do).
 */
import type { LabError } from "../topology/errors.ts";
import type { CliReporter } from "./progress.ts";

export async function runInterruptible<T>(
  reporter: Pick<CliReporter, "close">,
  run: (signal: AbortSignal) => Promise<T>,
  interrupted?: () => LabError,
): Promise<T> {
  const abort = new AbortController();
  const onSignal = () => abort.abort(new Error("interrupted"));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    return await run(abort.signal);
  } catch (err) {
    if (!interrupted || !abort.signal.aborted) throw err;
    throw interrupted();
  } finally {
    await reporter.close();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
