/**
 * OOM kills that containerd did not report. containerd's CRI learns of an OOM kill from a `TaskOOM`
 * event that the shim sends when the container cgroup's memory events change; that event races the
 * exit (and is lost when the cgroup is gone first), so under load an OOM-killed container shows
 * reason `Error`, exit code 137. The kernel log does not lose it: every kill is one `oom-kill:` record
 * in /dev/kmsg naming the victim's cgroup, which ends in the container ID (cgroupfs paths are
 * `<cgroupRoot>/pod<uid>/<containerID>`). kubelet reads the same records (cAdvisor's OOM parser).
 */
import { closeSync, constants, openSync, readSync } from "node:fs";
import type { ObservedPod } from "./observed.ts";

export const OOM_KILLED = "OOMKilled";
const SIGKILL_EXIT = 137;
const REMEMBERED = 4096;

/** Container IDs in `oom-kill:` records (Linux ≥ 4.19) and the older "Task in ... killed" form. */
const VICTIM = [
  /\boom-kill:.*\btask_memcg=\S*?\/([0-9a-f]{64})(?:,|$)/,
  /\bTask in \S*?\/([0-9a-f]{64}) killed\b/,
];

/** The kernel's OOM-kill records, read without blocking from /dev/kmsg. */
export class KernelOomLog {
  private fd: number | undefined;
  private failed = false;
  private partial = "";
  private killed = new Set<string>();

  constructor(private readonly path = "/dev/kmsg") {}

  /** Has the kernel OOM-killed a process of this container? Reads what was logged since the last call. */
  killedByOom(containerId: string): boolean {
    this.drain();
    return this.killed.has(containerId);
  }

  /** False when the log cannot be read (no /dev/kmsg in this environment). */
  get readable(): boolean {
    this.drain();
    return !this.failed;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private drain(): void {
    if (this.failed) return;
    if (this.fd === undefined) {
      try {
        this.fd = openSync(this.path, constants.O_RDONLY | constants.O_NONBLOCK);
      } catch {
        this.failed = true;
        return;
      }
    }
    const buf = Buffer.alloc(16 * 1024);
    for (;;) {
      let n: number;
      try {
        n = readSync(this.fd, buf, 0, buf.length, null);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "EPIPE") continue; // records overwritten before we read them: go on with the rest
        if (code !== "EAGAIN") this.failed = true;
        return;
      }
      if (n === 0) return; // end of a plain file
      this.parse(buf.toString("utf8", 0, n));
    }
  }

  private parse(text: string): void {
    const lines = (this.partial + text).split("\n");
    this.partial = lines.pop() ?? "";
    for (const line of lines) {
      for (const re of VICTIM) {
        const id = re.exec(line)?.[1];
        if (!id) continue;
        this.killed.add(id);
        if (this.killed.size > REMEMBERED) this.killed.delete(this.killed.values().next().value!);
      }
    }
  }
}

/** Rewrites `reason` of SIGKILLed containers that the kernel log shows were OOM-killed. */
export function applyOomKills(pods: Map<string, ObservedPod>, log: Pick<KernelOomLog, "killedByOom">): void {
  for (const pod of pods.values()) {
    for (const c of pod.containers) {
      const suspect =
        c.state === "CONTAINER_EXITED" && c.exitCode === SIGKILL_EXIT && c.reason !== OOM_KILLED;
      if (suspect && log.killedByOom(c.id)) c.reason = OOM_KILLED;
    }
  }
}
