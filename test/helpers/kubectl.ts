/** Stock kubectl 1.32, the judge of API behaviour, against a test cluster's kubeconfig. */
import { execFile } from "node:child_process";
import { randomInt } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface Kubectl {
  (...args: string[]): Promise<string>;
  /** kubectl's stderr, for commands expected to fail; throws if the command succeeded. */
  fails(...args: string[]): Promise<string>;
}

/**
 * A `kubectl(...args)` that resolves to stdout and rejects (with `stderr` on the error) on a
 * non-zero exit. `kubeconfig` is read at each call, so it may be set in a `beforeAll`.
 */
export function kubectlFor(kubeconfig: () => string, timeoutMs = 60_000): Kubectl {
  const kubectl = async (...args: string[]): Promise<string> => {
    const { stdout } = await run("/usr/bin/kubectl", args, {
      env: { ...process.env, KUBECONFIG: kubeconfig() },
      timeout: timeoutMs,
    });
    return stdout;
  };
  const fails = async (...args: string[]): Promise<string> => {
    try {
      await kubectl(...args);
    } catch (err) {
      return String((err as { stderr?: string }).stderr);
    }
    throw new Error(`kubectl ${args.join(" ")} succeeded, expected a failure`);
  };
  return Object.assign(kubectl, { fails });
}

/** `kubectl apply -f` of a manifest, written to a fresh file in `dir`. */
export async function applyYaml(kubectl: Kubectl, dir: string, yaml: string): Promise<void> {
  const file = join(dir, `apply-${randomInt(1e9)}.yaml`);
  await writeFile(file, yaml);
  await kubectl("apply", "-f", file);
}
