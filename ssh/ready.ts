/**
 * The named readiness check "ssh-ready": a machine counts as ready when an SSH login with the
 * lab's key succeeds AND the host presents exactly the pinned host key. On timeout it says what
 * is stuck and where to look, instead of a bare "timed out".
 */
import { readFile } from "node:fs/promises";
import type { Duplex } from "node:stream";
import { Client } from "ssh2";
import { LabError } from "../topology/errors.ts";
import type { SshEndpoint } from "./endpoint.ts";
import { deadlineController, untilAborted, waitUntilReady } from "../topology/readiness.ts";
import { connectJump, forwardOut, type JumpConnection } from "./jump.ts";

/** One SSH login attempt of ssh-ready: a host that took the TCP connection but said nothing is retried after this. */
export const SSH_ATTEMPT_MS = 10_000;

/** A machine's SSH endpoint (hostKey `ssh-ed25519 AAAA...`), named by its node. */
export type SshTarget = SshEndpoint & { node: string };

export type AttemptResult = { ok: true } | { ok: false; error: string; hostKeyMismatch?: boolean };

/**
 * One login attempt that runs `true`; never throws. `timeoutMs` bounds the whole attempt (jump,
 * TCP, SSH handshake, login and the command), so a host that accepts TCP and never speaks SSH, or
 * never runs the command, fails in time; `signal` ends it early.
 */
export async function trySsh(t: SshTarget, timeoutMs = 8000, signal?: AbortSignal): Promise<AttemptResult> {
  const bound = deadlineController(timeoutMs, () => `no SSH login within ${timeoutMs} ms`, signal);
  try {
    return await untilAborted(attemptSsh(t, timeoutMs, bound.signal), bound.signal).catch((err: unknown) => ({
      ok: false as const,
      error: (err as Error).message,
    }));
  } finally {
    bound.clear();
  }
}

async function attemptSsh(t: SshTarget, timeoutMs: number, signal: AbortSignal): Promise<AttemptResult> {
  const privateKey = await readFile(t.privateKeyPath, "utf8");
  const pinned = Buffer.from(t.hostKey.trim().split(/\s+/)[1] ?? "", "base64");
  let jump: JumpConnection | undefined;
  let sock: Duplex | undefined;
  if (t.jump) {
    try {
      jump = await connectJump(t.jump, { timeoutMs, signal });
      // An attempt abandoned at its deadline closes its jump connection (and any stream in it).
      const j = jump;
      signal.addEventListener("abort", () => j.close(), { once: true });
      if (signal.aborted) throw new Error("cancelled");
      sock = await forwardOut(jump, t.host, t.port);
    } catch (err) {
      jump?.close();
      const e = err as Error & { code?: string };
      // A wrong hypervisor key is as final as a wrong machine key: waiting will not fix it.
      return { ok: false, error: e.message, hostKeyMismatch: e.code === "HOST_KEY_MISMATCH" };
    }
  }
  return await new Promise((resolve) => {
    const c = new Client();
    let mismatch = false;
    let settled = false;
    const done = (r: AttemptResult) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      c.destroy();
      jump?.close();
      resolve(r);
    };
    const onAbort = () =>
      done({ ok: false, error: (signal.reason as Error | undefined)?.message ?? "cancelled" });
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    c.on("ready", () => {
      c.exec("true", (err, stream) => {
        if (err) return done({ ok: false, error: err.message });
        stream.on("close", (code: number) =>
          done(code === 0 ? { ok: true } : { ok: false, error: `exit ${code}` }),
        );
        stream.resume();
      });
    });
    c.on("error", (err) =>
      done({
        ok: false,
        error: mismatch ? "host key does not match the pinned key" : err.message,
        hostKeyMismatch: mismatch,
      }),
    );
    c.on("close", () => done({ ok: false, error: "connection closed" }));
    c.connect({
      ...(sock ? { sock } : {}),
      host: t.host,
      port: t.port,
      username: t.user,
      privateKey,
      readyTimeout: timeoutMs,
      hostVerifier: (key: Buffer) => {
        mismatch = !key.equals(pinned);
        return !mismatch;
      },
    });
  });
}

export interface ReadinessHints {
  /** Where to look when it does not come up (e.g. the console log). */
  consoleLog?: string;
  /** Returns the last lines of the console, for the error message. */
  consoleTail?: () => Promise<string>;
}

/** Polls until SSH works with the pinned key, or throws NOT_READY_SSH explaining what is stuck. */
export async function waitSshReady(
  t: SshTarget,
  opts: {
    timeoutMs: number;
    intervalMs?: number;
    signal?: AbortSignal;
    hints?: ReadinessHints;
    onAttempt?: (r: AttemptResult) => void;
  },
): Promise<number> {
  let last: AttemptResult = { ok: false, error: "no attempt yet" };
  const check = {
    name: `ssh-ready (${t.user}@${t.host}:${t.port}, node ${t.node})`,
    async probe(signal: AbortSignal) {
      last = await trySsh(t, SSH_ATTEMPT_MS, signal);
      opts.onAttempt?.(last);
      if (last.ok) return { ready: true };
      // Waiting will not fix a wrong host key.
      return { ready: false, detail: last.error, final: last.hostKeyMismatch === true };
    },
  };
  return await waitUntilReady(check, {
    timeoutMs: opts.timeoutMs,
    intervalMs: opts.intervalMs ?? 1000,
    attemptTimeoutMs: SSH_ATTEMPT_MS,
    ...(opts.signal ? { signal: opts.signal } : {}),
    async giveUp({ last: verdict, elapsedMs, final }) {
      const tail = opts.hints?.consoleTail ? (await opts.hints.consoleTail()).trim() : "";
      // The wait's last verdict: an attempt cut off at the deadline never returned its own.
      const reason =
        (last.ok ? undefined : last.error === "no attempt yet" ? undefined : last.error) ?? verdict ?? "";
      return new LabError({
        code: "NOT_READY_SSH",
        what:
          `readiness check ssh-ready failed for node ${t.node}: ${t.user}@${t.host}:${t.port} ` +
          (final
            ? "presented a host key that is not the pinned one"
            : `not reachable after ${Math.round(elapsedMs / 1000)} s (last error: ${reason})`) +
          (tail
            ? `\nlast console lines:\n${tail
                .split("\n")
                .map((l) => "  | " + l)
                .join("\n")}`
            : ""),
        where: opts.hints?.consoleLog ? `console log ${opts.hints.consoleLog}` : t.node,
        fix:
          (opts.hints?.consoleLog
            ? `look at the console log (lab logs ${t.node} --console); under TCG a loaded host needs longer (LAB_SSH_TIMEOUT=seconds)`
            : "check that the host is up and sshd is running") + (unreachableHint(reason) ?? ""),
        source: "host",
      });
    },
  });
}

/**
 * What a connect error says about where to look. EHOSTUNREACH on a lab network means no ARP answer:
 * the machine is off, or up without its address (seen when cloud-init could not match the NIC: the
 * guest booted to its login prompt and never answered).
 */
export function unreachableHint(error: string): string | undefined {
  if (/EHOSTUNREACH/.test(error))
    return "; nothing answered ARP for that address: if the console shows a login prompt, the guest's network did not come up (look for systemd-networkd or cloud-init errors there)";
  return undefined;
}

/** How long a machine may take to accept SSH: $LAB_SSH_TIMEOUT seconds, default 600 (TCG is slow). */
export function sshTimeoutMs(): number {
  const s = Number(process.env.LAB_SSH_TIMEOUT);
  return (Number.isFinite(s) && s > 0 ? s : 600) * 1000;
}

/** The last readable lines of a serial console log, for "what is stuck" messages. */
export async function consoleTail(path: string, lines = 15): Promise<string> {
  try {
    // Console output is full of carriage returns and escape sequences; keep the readable part.
    // eslint-disable-next-line no-control-regex -- stripping terminal escapes is the point
    const text = (await readFile(path, "utf8")).replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").replace(/\r/g, "");
    return text
      .split("\n")
      .filter((l) => l.trim())
      .slice(-lines)
      .join("\n");
  } catch {
    return "(no console output yet)";
  }
}
