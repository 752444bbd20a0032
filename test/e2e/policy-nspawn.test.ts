/**
 * Issue 19 on real containers: a lab of nspawn machines (1 master, 2 workers: examples/nspawn.yaml
 * made smaller) where `kubectl top` shows non-zero figures measured from the containers' cgroups,
 * an HPA scales a CPU-burning Deployment from 1 to 3 and back to 1 once the burning stops (a 10 s
 * scale-down window set through behavior), and `kubectl drain worker-1` moves pods while a
 * PodDisruptionBudget keeps 2 of 3 ready. Run: npx vitest run --project e2e test/e2e/policy-nspawn.test.ts
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { V1Deployment, V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2eLab, repo, until } from "./helpers.ts";

/** Burns a core (capped at 300m by its limit) until /tmp/stop exists, then idles. */
const burner = `apiVersion: apps/v1
kind: Deployment
metadata: {name: burner}
spec:
  replicas: 1
  selector: {matchLabels: {app: burner}}
  template:
    metadata: {labels: {app: burner}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: burn
        image: lab/sample:latest
        # holds 8 MB in a shell variable (a working set kubectl top shows in Mi), then burns CPU
        command: ["/bin/sh", "-c", "x=$(head -c 8000000 /dev/zero | tr '\\\\0' a); while [ ! -e /tmp/stop ]; do :; done; exec sleep 100000"]
        resources: {requests: {cpu: 100m}, limits: {cpu: 300m}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: burner}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burner}
  minReplicas: 1
  maxReplicas: 3
  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}]
  behavior: {scaleDown: {stabilizationWindowSeconds: 10}}
`;

const guarded = `apiVersion: apps/v1
kind: Deployment
metadata: {name: guarded}
spec:
  replicas: 3
  selector: {matchLabels: {app: guarded}}
  template:
    metadata: {labels: {app: guarded}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: c, image: lab/sample:latest, command: ["/bin/sleep", "100000"]}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: guarded}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: guarded}}
`;

describe("metrics, autoscaling and drain on nspawn machines", () => {
  let l: E2eLab;
  const pods = async (app: string): Promise<V1Pod[]> =>
    (await l.kubectlJson<{ items: V1Pod[] }>(["get", "pods", "-l", `app=${app}`])).items;
  const ready = async (app: string): Promise<V1Pod[]> =>
    (await pods(app)).filter(
      (p) =>
        !p.metadata?.deletionTimestamp &&
        p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
    );
  const replicas = async (name: string): Promise<number | undefined> =>
    (await l.kubectlJson<V1Deployment>(["get", "deployment", name])).spec?.replicas;

  beforeAll(async () => {
    const text = readFileSync(join(repo, "examples/nspawn.yaml"), "utf8")
      .replace(/^(\s*name:\s*)\S+\s*$/m, "$1NAME")
      .replace(/(masters:\s*\n\s*count:\s*)3/, "$11");
    l = await E2eLab.create("pol", text);
    const up = await l.lab(["--json", "up", "--wait", "8m"], { reject: false });
    if (up.exitCode !== 0) throw new Error(`lab up failed (exit ${up.exitCode}): ${up.stderr}`);
    await l.lab(["kubeconfig", l.name, "-o", l.kubeconfig]);
  });

  afterAll(async () => {
    await l?.remove();
  });

  it("an HPA scales a CPU-burning Deployment 1 → 3, kubectl top shows its real usage, and back to 1", async () => {
    await l.kubectl(["apply", "-f", "-"], { input: burner });
    await until(
      "burner scaled to 3",
      240_000,
      async () => ((await replicas("burner")) === 3 ? true : undefined),
      2000,
    );
    await until(
      "3 burner pods ready",
      180_000,
      async () => ((await ready("burner")).length === 3 ? true : undefined),
      2000,
    );
    // figures measured from the containers' cgroups (a burner gets up to its 300m limit, less on a loaded host)
    let lastTop = "";
    const top = await until(
      "kubectl top pods with 3 burners using CPU and memory",
      90_000,
      async () => {
        const r = await l.kubectl(["top", "pods", "-l", "app=burner", "--no-headers"], { reject: false });
        lastTop = `${r.stdout}\n${r.stderr}`;
        const rows = r.stdout
          .trim()
          .split("\n")
          .filter(Boolean)
          .map((x) => x.trim().split(/\s+/));
        // CPU measured from the cgroups (non-zero; up to the 300m limit), memory the 8 MB held
        return rows.length === 3 && rows.every((x) => parseInt(x[1]!, 10) > 0 && parseInt(x[2]!, 10) >= 5)
          ? rows
          : undefined;
      },
      3000,
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}; last kubectl top pods: ${lastTop}`);
    });
    expect(top).toHaveLength(3);
    const nodes = await l.kubectl(["top", "nodes", "--no-headers"]);
    const rows = nodes.stdout
      .trim()
      .split("\n")
      .map((x) => x.trim().split(/\s+/));
    expect(rows.map((r) => r[0]).sort()).toEqual(["master-1", "worker-1", "worker-2"]);
    for (const r of rows) {
      expect(parseInt(r[1]!, 10)).toBeGreaterThan(0);
      expect(parseInt(r[3]!, 10)).toBeGreaterThan(0);
    }
    const hpa = await l.kubectl(["get", "hpa", "burner", "--no-headers"]);
    expect(hpa.stdout).toMatch(/^burner\s+Deployment\/burner\s+cpu: \d+%\/50%\s+1\s+3\s+3\s/);
    // the load stops
    for (const p of await ready("burner"))
      await l.kubectl(["exec", p.metadata!.name!, "--", "touch", "/tmp/stop"]);
    await until(
      "burner back to 1",
      180_000,
      async () => ((await replicas("burner")) === 1 ? true : undefined),
      2000,
    );
    const events = await l.kubectl([
      "get",
      "events",
      "--field-selector",
      "involvedObject.kind=HorizontalPodAutoscaler",
    ]);
    expect(events.stdout).toContain("New size: 3");
    expect(events.stdout).toContain("New size: 1; reason: All metrics below target");
  }, 600_000);

  it("kubectl drain worker-1 moves its pods while the budget keeps 2 of 3 ready", async () => {
    await l.kubectl(["apply", "-f", "-"], { input: guarded });
    await until(
      "3 guarded pods ready",
      180_000,
      async () => ((await ready("guarded")).length === 3 ? true : undefined),
      2000,
    );
    let lowest = 3;
    let watching = true;
    const watch = (async () => {
      while (watching) {
        lowest = Math.min(lowest, (await ready("guarded")).length);
        await new Promise((r) => setTimeout(r, 500));
      }
    })();
    const drain = await l.kubectl(
      ["drain", "worker-1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=240s"],
      { timeoutMs: 260_000 },
    );
    expect(drain.stdout).toContain("node/worker-1 drained");
    await until(
      "3 guarded pods ready again",
      180_000,
      async () => ((await ready("guarded")).length === 3 ? true : undefined),
      2000,
    );
    watching = false;
    await watch;
    expect(lowest).toBeGreaterThanOrEqual(2);
    expect((await ready("guarded")).some((p) => p.spec?.nodeName === "worker-1")).toBe(false);
    await l.kubectl(["uncordon", "worker-1"]);
  }, 600_000);
});
