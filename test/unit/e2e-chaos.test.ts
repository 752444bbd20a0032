// The chaos run's arithmetic (test/e2e/chaos.ts): the API gap of a fault window and what counts as
// a crash in a node's journal. The workload itself runs against a real lab in test/e2e/cluster.test.ts.
import { describe, expect, it } from "vitest";
import { journalCrashLines, KubectlWorkload, unitExits } from "../e2e/chaos.ts";

const withAcks = (times: number[]) => {
  const w = new KubectlWorkload({ kubeconfig: "/nonexistent" }, "t");
  for (const [i, at] of times.entries()) w.acked.push({ name: `t-${i}`, at });
  return w;
};

describe("the API gap of a fault window", () => {
  it("runs from the last ack before the fault through every ack in the window to its end", () => {
    const w = withAcks([1_000, 2_000, 3_000, 15_000, 16_000]);
    // fault at 3.5 s: 3 s → 15 s without an ack
    expect(w.gap(3_500, 17_000)).toBe(12_000);
  });

  it("counts a window whose acks have not come back yet up to its end", () => {
    expect(withAcks([1_000, 2_000]).gap(2_500, 30_000)).toBe(28_000);
  });

  it("starts at the fault when nothing was acked before it", () => {
    expect(withAcks([5_000, 6_000]).gap(1_000, 6_500)).toBe(4_000);
  });

  it("ignores acks after the window", () => {
    expect(withAcks([1_000, 2_000, 3_000, 50_000]).gap(2_000, 4_000)).toBe(1_000);
  });
});

describe("crashes in a journal", () => {
  it("finds an uncaught exception's trace and systemd's exits, not ordinary log lines", () => {
    const journal = [
      "listening on https://0.0.0.0:6443",
      "lab-agent: watching pods: connect ECONNREFUSED 10.0.0.1:6443",
      "file:///opt/lab/lib/lab-server.cjs:123",
      "Error [ERR_HTTP_HEADERS_SENT]: Cannot write headers after they are sent to the client",
      "    at ServerResponse.writeHead (node:_http_server:345:11)",
      "    at end (/opt/lab/lib/lab-server.cjs:4567:9)",
      "lab-server.service: Main process exited, code=exited, status=1/FAILURE",
      "lab-server.service: Scheduled restart job, restart counter is at 1.",
    ].join("\n");
    expect(journalCrashLines(journal)).toEqual([
      "    at ServerResponse.writeHead (node:_http_server:345:11)",
      "    at end (/opt/lab/lib/lab-server.cjs:4567:9)",
    ]);
    expect(unitExits(journal, "lab-server.service")).toHaveLength(1);
    expect(unitExits(journal, "lab-agent.service")).toEqual([]);
  });

  it("sees node's own fatal markers", () => {
    expect(
      journalCrashLines("node:internal/process/promises:391\n    triggerUncaughtException(err, true);"),
    ).toHaveLength(1);
    expect(journalCrashLines("FATAL ERROR: Reached heap limit Allocation failed")).toHaveLength(1);
  });
});
