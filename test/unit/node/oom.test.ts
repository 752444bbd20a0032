import { appendFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { ObservedContainer, ObservedPod } from "../../../node/observed.ts";
import { applyOomKills, KernelOomLog } from "../../../node/oom.ts";

const id = (c: string): string => c.repeat(64);
const exited = (cid: string, exitCode: number, reason = "Error"): ObservedContainer => ({
  id: cid,
  sandboxId: "s",
  name: "c",
  attempt: 0,
  state: "CONTAINER_EXITED",
  createdAt: 1,
  startedAt: 1,
  finishedAt: 2,
  exitCode,
  reason,
  message: "",
  image: "i",
  imageRef: "i",
});
// what /dev/kmsg hands out on Linux 6.1 for a container over its memory limit
const record = (cid: string, seq: number): string =>
  `6,${seq},23335849269,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=${cid},mems_allowed=0,` +
  `oom_memcg=/lab-pods/pod0000/${cid},task_memcg=/lab-pods/pod0000/${cid},task=dd,pid=17167,uid=0\n` +
  `3,${seq + 1},23335849287,-;Memory cgroup out of memory: Killed process 17167 (dd) total-vm:133340kB\n`;

describe("OOM kills containerd did not report", () => {
  it("finds the victims' container IDs in the kernel log, also records logged after the first read", () => {
    const file = join(mkdtempSync(join(tmpdir(), "kmsg-")), "kmsg");
    writeFileSync(file, `6,1,1,-;unrelated\n${record(id("a"), 2)}`);
    const log = new KernelOomLog(file);
    expect(log.readable).toBe(true);
    expect(log.killedByOom(id("a"))).toBe(true);
    expect(log.killedByOom(id("b"))).toBe(false);
    appendFileSync(file, record(id("b"), 4));
    expect(log.killedByOom(id("b"))).toBe(true);
    log.close();
    expect(new KernelOomLog(join(tmpdir(), "no-such-kmsg")).readable).toBe(false);
  });

  it("turns only SIGKILLed containers the kernel OOM-killed into OOMKilled", () => {
    const pods = new Map<string, ObservedPod>([
      [
        "u1",
        {
          uid: "u1",
          sandboxes: [],
          containers: [exited(id("a"), 137), exited(id("b"), 137), exited(id("c"), 1), exited(id("d"), 0)],
        },
      ],
    ]);
    applyOomKills(pods, { killedByOom: (cid) => cid === id("a") || cid === id("c") });
    expect(pods.get("u1")!.containers.map((c) => c.reason)).toEqual(["OOMKilled", "Error", "Error", "Error"]);
  });
});
