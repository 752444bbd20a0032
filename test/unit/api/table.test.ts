import { describe, expect, it } from "vitest";
import { humanDuration, toTable } from "../../../api/table.ts";

const now = Date.parse("2026-01-01T01:00:00Z");
const created = "2026-01-01T00:00:00Z";

describe("tables", () => {
  it("prints pods as kubectl does", () => {
    const t = toTable(
      "Pod",
      [
        {
          metadata: { name: "p", creationTimestamp: created },
          spec: { containers: [{}, {}], nodeName: "n1" },
          status: {
            phase: "Running",
            podIP: "10.0.0.5",
            containerStatuses: [
              { ready: true, restartCount: 2 },
              { ready: false, restartCount: 1, state: { waiting: { reason: "CrashLoopBackOff" } } },
            ],
          },
        },
      ],
      { now },
    );
    expect(t.columnDefinitions.filter((c) => c.priority === 0).map((c) => c.name)).toEqual([
      "Name",
      "Ready",
      "Status",
      "Restarts",
      "Age",
    ]);
    expect(t.rows[0]!.cells.slice(0, 7)).toEqual([
      "p",
      "1/2",
      "CrashLoopBackOff",
      3,
      "60m",
      "10.0.0.5",
      "n1",
    ]);
    expect(t.rows[0]!.object).toMatchObject({ kind: "PartialObjectMetadata", metadata: { name: "p" } });
  });
  it("prints a pod's init progress in the Status column as kubectl does", () => {
    const status = (inits: object[]): unknown =>
      toTable(
        "Pod",
        [
          {
            metadata: { name: "p", creationTimestamp: created },
            spec: { initContainers: [{}, {}], containers: [{}] },
            status: {
              phase: "Pending",
              initContainerStatuses: inits,
              containerStatuses: [{ ready: false, state: { waiting: { reason: "PodInitializing" } } }],
            },
          },
        ],
        { now },
      ).rows[0]!.cells[2];
    const done = { state: { terminated: { exitCode: 0, reason: "Completed" } } };
    expect(status([done, { state: { running: {} } }])).toBe("Init:1/2");
    expect(status([{ state: { waiting: { reason: "PodInitializing" } } }, {}])).toBe("Init:0/2");
    expect(status([{ restartCount: 3, state: { waiting: { reason: "CrashLoopBackOff" } } }, {}])).toBe(
      "Init:CrashLoopBackOff",
    );
    expect(status([done, { state: { terminated: { exitCode: 1, reason: "Error" } } }])).toBe("Init:Error");
  });

  it("prints deployments, services and nodes", () => {
    const d = toTable(
      "Deployment",
      [
        {
          metadata: { name: "d", creationTimestamp: created },
          spec: { replicas: 3, template: {} },
          status: { readyReplicas: 2, updatedReplicas: 3, availableReplicas: 2 },
        },
      ],
      { now },
    );
    expect(d.rows[0]!.cells.slice(0, 5)).toEqual(["d", "2/3", 3, 2, "60m"]);
    const s = toTable(
      "Service",
      [
        {
          metadata: { name: "s", creationTimestamp: created },
          spec: { type: "ClusterIP", clusterIP: "10.96.0.9", ports: [{ port: 80, protocol: "TCP" }] },
        },
      ],
      { now },
    );
    expect(s.rows[0]!.cells.slice(0, 5)).toEqual(["s", "ClusterIP", "10.96.0.9", "<none>", "80/TCP"]);
    const n = toTable(
      "Node",
      [
        {
          metadata: {
            name: "n",
            creationTimestamp: created,
            labels: { "node-role.kubernetes.io/control-plane": "" },
          },
          spec: { unschedulable: true },
          status: { conditions: [{ type: "Ready", status: "True" }], nodeInfo: { kubeletVersion: "v1" } },
        },
      ],
      { now },
    );
    expect(n.rows[0]!.cells.slice(0, 5)).toEqual([
      "n",
      "Ready,SchedulingDisabled",
      "control-plane",
      "60m",
      "v1",
    ]);
  });
  it("formats ages like kubectl", () => {
    expect(
      [5_000, 150_000, 600_000, 4 * 3600_000 + 60_000, 30 * 3600_000, 3 * 86400_000].map(humanDuration),
    ).toEqual(["5s", "2m30s", "10m", "4h1m", "30h", "3d"]);
  });
});
