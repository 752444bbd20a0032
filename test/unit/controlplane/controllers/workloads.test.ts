/**
 * The pure parts of the workload controllers (issue 19): cron schedules (fields, names, steps, the
 * @ descriptors, time zones across DST), the Job decision (parallelism, back-off, backoffLimit,
 * deadline, Indexed mode, TTL, suspend), a CronJob's missed starts, hollow nodes' simulated exit
 * codes, and the kinds' defaults, validation and printer columns.
 */
import type { V1Job, V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { applyWorkloadDefaults } from "../../../../api/defaults-workloads.ts";
import { toTable } from "../../../../api/table.ts";
import { validateObject } from "../../../../api/validation.ts";
import { scheduledTimes } from "../../../../controlplane/controllers/cronjob.ts";
import { indexesText, jobDecision, parseIndexes } from "../../../../controlplane/controllers/job-decision.ts";
import { CronError, nextTime, parseSchedule } from "../../../../lib/cron.ts";
import { hollowDecision, simulatedExitCode } from "../../../../node/hollow/pod-status.ts";

const at = (iso: string): number => Date.parse(iso);
const iso = (ms: number): string => new Date(ms).toISOString();
function next(spec: string, from: string, n = 3, tz = "UTC"): string[] {
  const s = parseSchedule(spec);
  const out: string[] = [];
  let t = at(from);
  for (let i = 0; i < n; i++) out.push(iso((t = nextTime(s, t, tz)!)));
  return out;
}

describe("cron schedules", () => {
  it("the five fields with lists, ranges, steps and names", () => {
    expect(next("*/15 * * * *", "2026-01-01T00:07:00Z")).toEqual([
      "2026-01-01T00:15:00.000Z",
      "2026-01-01T00:30:00.000Z",
      "2026-01-01T00:45:00.000Z",
    ]);
    expect(next("0 9-17/4 * * MON-FRI", "2026-01-02T10:00:00Z")).toEqual([
      "2026-01-02T13:00:00.000Z",
      "2026-01-02T17:00:00.000Z",
      "2026-01-05T09:00:00.000Z",
    ]);
    expect(next("30 0 1,15 jan,JUL *", "2026-01-10T00:00:00Z", 2)).toEqual([
      "2026-01-15T00:30:00.000Z",
      "2026-07-01T00:30:00.000Z",
    ]);
    // day of month and day of week both restricted: either matches (Friday the 13th or any Friday)
    expect(next("0 0 13 * 5", "2026-03-01T00:00:00Z", 3)).toEqual([
      "2026-03-06T00:00:00.000Z",
      "2026-03-13T00:00:00.000Z",
      "2026-03-20T00:00:00.000Z",
    ]);
  });

  it("the @ descriptors and @every", () => {
    expect(next("@hourly", "2026-01-01T00:30:00Z", 1)).toEqual(["2026-01-01T01:00:00.000Z"]);
    expect(next("@daily", "2026-01-01T00:30:00Z", 1)).toEqual(["2026-01-02T00:00:00.000Z"]);
    expect(next("@midnight", "2026-01-01T00:30:00Z", 1)).toEqual(["2026-01-02T00:00:00.000Z"]);
    expect(next("@weekly", "2026-01-01T00:30:00Z", 1)).toEqual(["2026-01-04T00:00:00.000Z"]);
    expect(next("@monthly", "2026-01-01T00:30:00Z", 1)).toEqual(["2026-02-01T00:00:00.000Z"]);
    expect(next("@yearly", "2026-01-01T00:30:00Z", 1)).toEqual(["2027-01-01T00:00:00.000Z"]);
    expect(next("@annually", "2026-01-01T00:30:00Z", 1)).toEqual(["2027-01-01T00:00:00.000Z"]);
    expect(next("@every 1h30m", "2026-01-01T00:00:00Z", 2)).toEqual([
      "2026-01-01T01:30:00.000Z",
      "2026-01-01T03:00:00.000Z",
    ]);
  });

  it("a time zone's wall clock, across the spring-forward gap", () => {
    expect(next("0 9 * * *", "2026-03-27T12:00:00Z", 3, "Europe/Berlin")).toEqual([
      "2026-03-28T08:00:00.000Z", // CET
      "2026-03-29T07:00:00.000Z", // CEST from the 29th
      "2026-03-30T07:00:00.000Z",
    ]);
    // 02:30 does not exist on 2026-03-29 in Berlin: it runs at the first instant after the gap
    expect(next("30 2 * * *", "2026-03-28T12:00:00Z", 2, "Europe/Berlin")).toEqual([
      "2026-03-29T01:30:00.000Z",
      "2026-03-30T00:30:00.000Z",
    ]);
  });

  it("refuses what is not a schedule, in robfig/cron's words", () => {
    const err = (s: string): string => {
      try {
        parseSchedule(s);
        return "";
      } catch (e) {
        expect(e).toBeInstanceOf(CronError);
        return (e as Error).message;
      }
    };
    expect(err("* * * *")).toBe("expected exactly 5 fields, found 4: * * * *");
    expect(err("60 * * * *")).toBe("end of range (60) above maximum (59): 60 (minute)");
    expect(err("@fortnightly")).toBe("unrecognized descriptor: @fortnightly");
    expect(err("*/0 * * * *")).toBe("step of range should be a positive number: */0 (minute)");
    expect(err("5-2 * * * *")).toBe("beginning of range (5) beyond end of range (2): 5-2 (minute)");
  });

  it("a CronJob's missed starts: the latest one before now, the next after", () => {
    const s = parseSchedule("*/5 * * * *");
    const r = scheduledTimes(s, at("2026-01-01T00:00:00Z"), at("2026-01-01T00:17:00Z"), "UTC");
    expect(r).toEqual({ latest: at("2026-01-01T00:15:00Z"), missed: 3, next: at("2026-01-01T00:20:00Z") });
    const many = scheduledTimes(
      parseSchedule("* * * * *"),
      at("2026-01-01T00:00:00Z"),
      at("2026-01-02T00:00:30Z"),
      "UTC",
    );
    expect(many.missed).toBeGreaterThan(100);
    expect(many.latest).toBe(at("2026-01-02T00:00:00Z"));
  });
});

const NOW = at("2026-05-01T12:00:00Z");

function job(spec: Partial<V1Job["spec"]>, status: V1Job["status"] = {}): V1Job {
  const j: V1Job = {
    metadata: { name: "j", namespace: "default", uid: "u1" },
    spec: { template: { spec: { restartPolicy: "Never", containers: [{ name: "c" }] } }, ...spec },
    status,
  };
  applyWorkloadDefaults("Job", j as unknown as Record<string, unknown>);
  return j;
}

function pod(phase: string, extra: Partial<V1Pod> = {}, finishedAt = NOW - 1000): V1Pod {
  return {
    metadata: {
      name: `p-${Math.random()}`,
      creationTimestamp: new Date(NOW - 5000) as never,
      ...extra.metadata,
    },
    spec: { containers: [] },
    status: {
      phase,
      containerStatuses:
        phase === "Failed"
          ? [
              {
                name: "c",
                image: "",
                imageID: "",
                ready: false,
                restartCount: 0,
                state: { terminated: { exitCode: 1, finishedAt: new Date(finishedAt) } },
              },
            ]
          : [],
      ...extra.status,
    },
  };
}

describe("the Job decision", () => {
  it("creates up to parallelism, never more than the completions left", () => {
    expect(jobDecision(job({ completions: 3, parallelism: 2 }), [], { nowMs: NOW }).create.count).toBe(2);
    const d = jobDecision(
      job({ completions: 3, parallelism: 2 }),
      [pod("Succeeded"), pod("Succeeded"), pod("Running")],
      {
        nowMs: NOW,
      },
    );
    expect(d.create.count).toBe(0);
    expect(d.status).toMatchObject({ succeeded: 2, active: 1 });
  });

  it("completes at its completions with the Complete condition and completionTime", () => {
    const d = jobDecision(job({ completions: 2 }), [pod("Succeeded"), pod("Succeeded")], { nowMs: NOW });
    expect(d.finished?.type).toBe("Complete");
    expect(d.status.conditions?.find((c) => c.type === "Complete")).toMatchObject({ status: "True" });
    expect(d.status.completionTime).toBeDefined();
  });

  it("backs off exponentially after failures and fails past backoffLimit", () => {
    const one = jobDecision(job({ backoffLimit: 3 }), [pod("Failed")], { nowMs: NOW });
    expect(one.create.count).toBe(0); // 10 s after a failure 1 s ago
    expect(one.recheckMs).toBe(9000);
    const later = jobDecision(job({ backoffLimit: 3 }), [pod("Failed", {}, NOW - 11_000)], { nowMs: NOW });
    expect(later.create.count).toBe(1);
    // two failures: 20 s
    const two = jobDecision(
      job({ backoffLimit: 3 }),
      [pod("Failed", {}, NOW - 15_000), pod("Failed", {}, NOW - 15_000)],
      { nowMs: NOW },
    );
    expect(two.create.count).toBe(0);
    expect(two.recheckMs).toBe(5000);
    const over = jobDecision(job({ backoffLimit: 1 }), [pod("Failed"), pod("Failed")], { nowMs: NOW });
    expect(over.finished).toEqual({
      type: "Failed",
      reason: "BackoffLimitExceeded",
      message: "Job has reached the specified backoff limit",
    });
  });

  it("counts OnFailure restarts as failures", () => {
    const j = job({
      backoffLimit: 2,
      template: { spec: { restartPolicy: "OnFailure", containers: [{ name: "c" }] } },
    });
    const running = pod("Running", {
      status: {
        phase: "Running",
        containerStatuses: [{ name: "c", image: "", imageID: "", ready: true, restartCount: 3 }],
      },
    });
    expect(jobDecision(j, [running], { nowMs: NOW }).finished?.reason).toBe("BackoffLimitExceeded");
  });

  it("fails past activeDeadlineSeconds and deletes its active pods", () => {
    const running = pod("Running");
    const d = jobDecision(
      job({ activeDeadlineSeconds: 10 }, { startTime: new Date(NOW - 11_000) }),
      [running],
      { nowMs: NOW },
    );
    expect(d.finished?.reason).toBe("DeadlineExceeded");
    expect(d.delete).toEqual([running]);
  });

  it("Indexed: creates the missing indexes and tracks completedIndexes", () => {
    const done = (i: number): V1Pod =>
      pod("Succeeded", {
        metadata: { annotations: { "batch.kubernetes.io/job-completion-index": String(i) } },
      });
    const d = jobDecision(
      job({ completions: 5, parallelism: 2, completionMode: "Indexed" }),
      [done(0), done(2)],
      { nowMs: NOW },
    );
    expect(d.create.indexes).toEqual([1, 3]);
    expect(d.status.completedIndexes).toBe("0,2");
    expect(indexesText(new Set([0, 1, 2, 4, 6, 7]))).toBe("0-2,4,6-7");
    expect([...parseIndexes("0-2,4")]).toEqual([0, 1, 2, 4]);
  });

  it("suspended: no pods, the Suspended condition; finished with a TTL: expires", () => {
    const running = pod("Running");
    const s = jobDecision(job({ suspend: true }), [running], { nowMs: NOW });
    expect(s.delete).toEqual([running]);
    expect(s.status.conditions?.find((c) => c.type === "Suspended")).toMatchObject({
      status: "True",
      reason: "JobSuspended",
    });
    const finished = job(
      { ttlSecondsAfterFinished: 5 },
      { completionTime: new Date(NOW - 6000), conditions: [{ type: "Complete", status: "True" }] },
    );
    expect(jobDecision(finished, [], { nowMs: NOW }).expired).toBe(true);
    expect(jobDecision(finished, [], { nowMs: NOW - 3000 }).recheckMs).toBe(2000);
  });
});

describe("hollow nodes' simulated runs", () => {
  const hp = (restartPolicy: string, command: string[]): V1Pod => ({
    metadata: { name: "p", uid: "u" },
    spec: { restartPolicy, containers: [{ name: "c", image: "x", command }] },
    status: { phase: "Running", startTime: new Date(NOW - 3000) },
  });
  const inputs = { hostIP: "10.0.0.1", podIP: "10.244.0.5", now: new Date(NOW), runMs: 1000 };

  it("exit codes of false and sh -c 'exit N'", () => {
    expect(simulatedExitCode(hp("Never", ["true"]))).toBe(0);
    expect(simulatedExitCode(hp("Never", ["/bin/false"]))).toBe(1);
    expect(simulatedExitCode(hp("Never", ["sh", "-c", "exit 3"]))).toBe(3);
  });

  it("a failing Never pod is Failed with its exit code; an OnFailure one restarts", () => {
    const failed = hollowDecision(hp("Never", ["sh", "-c", "exit 3"]), inputs);
    expect(failed.kind === "status" && failed.status.phase).toBe("Failed");
    expect(
      failed.kind === "status" && failed.status.containerStatuses?.[0]?.state?.terminated?.exitCode,
    ).toBe(3);
    const restarting = hollowDecision(hp("OnFailure", ["false"]), inputs);
    expect(restarting.kind === "status" && restarting.status.phase).toBe("Running");
    expect(restarting.kind === "status" && restarting.status.containerStatuses?.[0]?.restartCount).toBe(3);
  });
});

describe("defaults, validation and columns", () => {
  const causes = (kind: string, o: Record<string, unknown>) => {
    applyWorkloadDefaults(kind, o);
    return validateObject(kind, o, true).map((c) => `${c.field}: ${c.message}`);
  };
  const tpl = (restartPolicy?: string) => ({
    metadata: { labels: { app: "a" } },
    spec: { ...(restartPolicy ? { restartPolicy } : {}), containers: [{ name: "c", image: "i" }] },
  });

  it("upstream's defaults", () => {
    const cj: Record<string, unknown> = {
      spec: { schedule: "@daily", jobTemplate: { spec: { template: tpl("Never") } } },
    };
    applyWorkloadDefaults("CronJob", cj);
    expect(cj.spec).toMatchObject({
      concurrencyPolicy: "Allow",
      suspend: false,
      successfulJobsHistoryLimit: 3,
      failedJobsHistoryLimit: 1,
      jobTemplate: {
        spec: { completions: 1, parallelism: 1, backoffLimit: 6, completionMode: "NonIndexed" },
      },
    });
    const ds: Record<string, unknown> = { spec: { template: tpl() } };
    applyWorkloadDefaults("DaemonSet", ds);
    expect(ds.spec).toMatchObject({
      updateStrategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } },
      revisionHistoryLimit: 10,
    });
    const sts: Record<string, unknown> = { spec: { template: tpl() } };
    applyWorkloadDefaults("StatefulSet", sts);
    expect(sts.spec).toMatchObject({
      replicas: 1,
      podManagementPolicy: "OrderedReady",
      updateStrategy: { type: "RollingUpdate", rollingUpdate: { partition: 0 } },
    });
    const rc: Record<string, unknown> = { metadata: {}, spec: { template: tpl() } };
    applyWorkloadDefaults("ReplicationController", rc);
    expect(rc).toMatchObject({
      metadata: { labels: { app: "a" } },
      spec: { replicas: 1, selector: { app: "a" } },
    });
  });

  it("upstream's validation messages", () => {
    const meta = { name: "x", namespace: "d" };
    expect(
      causes("CronJob", {
        metadata: meta,
        spec: {
          schedule: "* * *",
          concurrencyPolicy: "Sometimes",
          jobTemplate: { spec: { template: tpl("Never") } },
        },
      }),
    ).toEqual([
      'spec.schedule: Invalid value: "* * *": expected exactly 5 fields, found 3: * * *',
      'spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace"',
    ]);
    expect(
      causes("DaemonSet", {
        metadata: meta,
        spec: { selector: { matchLabels: { app: "b" } }, template: tpl() },
      }),
    ).toEqual([
      'spec.template.metadata.labels: Invalid value: {"app":"a"}: `selector` does not match template `labels`',
    ]);
    expect(
      causes("StatefulSet", {
        metadata: meta,
        spec: { selector: { matchLabels: { app: "a" } }, template: tpl(), podManagementPolicy: "Random" },
      }),
    ).toEqual([
      'spec.podManagementPolicy: Unsupported value: "Random": supported values: "OrderedReady", "Parallel"',
    ]);
    expect(
      causes("ReplicationController", { metadata: meta, spec: { template: { spec: tpl().spec } } }),
    ).toEqual(["spec.selector: Required value"]);
  });

  it("kubectl's columns", () => {
    const now = NOW;
    const created = new Date(now - 90_000).toISOString();
    const t = toTable(
      "Job",
      [
        {
          metadata: { name: "pi", creationTimestamp: created },
          spec: { completions: 3 },
          status: { succeeded: 1, startTime: created },
        },
      ],
      { now },
    );
    expect(t.columnDefinitions.filter((c) => c.priority === 0).map((c) => c.name)).toEqual([
      "Name",
      "Status",
      "Completions",
      "Duration",
      "Age",
    ]);
    expect(t.rows[0]!.cells.slice(0, 5)).toEqual(["pi", "Running", "1/3", "90s", "90s"]);
    const cj = toTable(
      "CronJob",
      [{ metadata: { name: "c", creationTimestamp: created }, spec: { schedule: "@hourly" }, status: {} }],
      { now },
    );
    expect(cj.columnDefinitions.filter((c) => c.priority === 0).map((c) => c.name)).toEqual([
      "Name",
      "Schedule",
      "Timezone",
      "Suspend",
      "Active",
      "Last Schedule",
      "Age",
    ]);
    expect(cj.rows[0]!.cells.slice(0, 7)).toEqual(["c", "@hourly", "<none>", "False", 0, "<none>", "90s"]);
    const cr = toTable(
      "ControllerRevision",
      [
        {
          metadata: {
            name: "ds-5d8",
            creationTimestamp: created,
            ownerReferences: [{ apiVersion: "apps/v1", kind: "DaemonSet", name: "ds", controller: true }],
          },
          revision: 2,
        },
      ],
      { now },
    );
    expect(cr.rows[0]!.cells).toEqual(["ds-5d8", "daemonset.apps/ds", 2, "90s"]);
  });
});
