/**
 * The workloads of issue 19 on real containers: one nspawn lab (examples/nspawn.yaml cut to 1
 * master + 2 workers), the book-style manifests applied as they are (images aside): a Job of 3
 * completions succeeds; a failing Job stops at its backoffLimit; a CronJob fires on the minute and
 * keeps its history limit; a DaemonSet runs one pod on each worker and none on the tainted master;
 * StatefulSet pods come up in order and resolve each other by name through the headless Service.
 * Run: npx vitest run --project e2e test/e2e/workloads-nspawn.test.ts
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { V1CronJob, V1Job, V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2eLab, repo, Timings, until } from "./helpers.ts";

const timings = new Timings("workloads-nspawn", "e2e workloads on nspawn (1 master + 2 workers)");
afterAll(async () => {
  await timings.write().catch(() => undefined);
});

const JOB = `apiVersion: batch/v1
kind: Job
metadata:
  name: batch-job
spec:
  completions: 3
  parallelism: 2
  template:
    metadata:
      labels:
        app: batch-job
    spec:
      restartPolicy: OnFailure
      containers:
      - name: main
        image: lab/sample:latest
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "echo started; sleep 2; echo done"]
`;

const FAILING_JOB = `apiVersion: batch/v1
kind: Job
metadata:
  name: failing
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: lab/sample:latest
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "exit 3"]
`;

const CRONJOB = `apiVersion: batch/v1
kind: CronJob
metadata:
  name: every-minute
spec:
  schedule: "* * * * *"
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        metadata:
          labels:
            app: every-minute
        spec:
          restartPolicy: OnFailure
          containers:
          - name: main
            image: lab/sample:latest
            imagePullPolicy: IfNotPresent
            command: ["sh", "-c", "date"]
`;

const DAEMONSET = `apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: node-agent
spec:
  selector:
    matchLabels:
      app: node-agent
  template:
    metadata:
      labels:
        app: node-agent
    spec:
      containers:
      - name: main
        image: lab/sample:latest
        imagePullPolicy: IfNotPresent
        command: ["/bin/sleep", "infinity"]
`;

const STATEFULSET = `apiVersion: v1
kind: Service
metadata:
  name: quiz
spec:
  clusterIP: None
  selector:
    app: quiz
  ports:
  - name: http
    port: 8080
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: quiz
spec:
  serviceName: quiz
  replicas: 3
  selector:
    matchLabels:
      app: quiz
  template:
    metadata:
      labels:
        app: quiz
    spec:
      containers:
      - name: main
        image: lab/sample:latest
        imagePullPolicy: IfNotPresent
        ports:
        - name: http
          containerPort: 8080
        readinessProbe:
          tcpSocket:
            port: http
          periodSeconds: 2
`;

describe("workloads on nspawn machines", () => {
  let l: E2eLab;
  const items = async <T>(args: string[]) => (await l.kubectlJson<{ items: T[] }>(args)).items;
  const apply = (yaml: string) => l.kubectl(["apply", "-f", "-"], { input: yaml });

  beforeAll(async () => {
    const text = readFileSync(join(repo, "examples/nspawn.yaml"), "utf8")
      .replace(/^(\s*name:\s*)\S+\s*$/m, "$1NAME")
      .replace(/(masters:\s*\n\s*count:\s*)\d+/, "$11");
    l = await E2eLab.create("wl", text);
    const t0 = Date.now();
    // 15 min: on a loaded 2-core host 3 machines can take that long to be Ready.
    const up = await l.lab(["--json", "up", "--wait", "15m"], { reject: false });
    timings.add("lab up to 3 nodes Ready", Date.now() - t0);
    if (up.exitCode !== 0)
      throw new Error(
        `lab up failed (exit ${up.exitCode}): ${up.stderr}\n${up.stdout.split("\n").slice(-40).join("\n")}`,
      );
    await l.lab(["kubeconfig", l.name, "-o", l.kubeconfig]);
    // Everything at once: the lab runs them side by side, each test checks its own.
    await apply([JOB, FAILING_JOB, CRONJOB, DAEMONSET, STATEFULSET].join("---\n"));
  }, 1_200_000);

  afterAll(async () => {
    await l?.remove();
  });

  it("a Job of 3 completions succeeds in real containers; a failing one stops at its backoffLimit", async () => {
    await timings.time("job of 3 completions", () =>
      l.kubectl(["wait", "--for=condition=complete", "job/batch-job", "--timeout=240s"], {
        timeoutMs: 250_000,
      }),
    );
    const job = await l.kubectlJson<V1Job>(["get", "job", "batch-job"]);
    expect(job.status).toMatchObject({ succeeded: 3 });
    const pods = await items<V1Pod>(["get", "pods", "-l", "job-name=batch-job"]);
    expect(pods.filter((p) => p.status?.phase === "Succeeded").length).toBeGreaterThanOrEqual(3);
    const log = await l.kubectl(["logs", pods[0]!.metadata!.name!]);
    expect(log.stdout).toBe("started\ndone"); // execa strips the last newline
    await l.kubectl(["wait", "--for=condition=failed", "job/failing", "--timeout=180s"], {
      timeoutMs: 190_000,
    });
    const failed = await l.kubectlJson<V1Job>(["get", "job", "failing"]);
    expect(failed.status?.failed).toBe(2);
    expect(failed.status?.conditions?.find((c) => c.type === "Failed")?.reason).toBe("BackoffLimitExceeded");
    const fp = await items<V1Pod>(["get", "pods", "-l", "job-name=failing"]);
    expect(fp.map((p) => p.status?.containerStatuses?.[0]?.state?.terminated?.exitCode)).toEqual([3, 3]);
  }, 480_000);

  it("a DaemonSet runs one pod on each worker and none on the tainted master", async () => {
    const nodes = await until(
      "node-agent Running on both workers",
      180_000,
      async () => {
        const ps = (await items<V1Pod>(["get", "pods", "-l", "app=node-agent"])).filter(
          (p) => p.status?.phase === "Running",
        );
        const names = ps.map((p) => p.spec!.nodeName!).sort();
        return names.length === 2 ? names : undefined;
      },
      2000,
    );
    expect(nodes).toEqual(["worker-1", "worker-2"]);
    const st = await l.kubectl(["rollout", "status", "ds/node-agent", "--timeout=60s"]);
    expect(st.stdout).toContain('daemon set "node-agent" successfully rolled out');
  }, 240_000);

  it("StatefulSet pods come up in order and resolve each other by name", async () => {
    await timings.time("statefulset of 3 ready", () =>
      l.kubectl(["rollout", "status", "sts/quiz", "--timeout=240s"], { timeoutMs: 250_000 }),
    );
    const pods = (await items<V1Pod>(["get", "pods", "-l", "app=quiz"])).sort((a, b) =>
      a.metadata!.name!.localeCompare(b.metadata!.name!),
    );
    expect(pods.map((p) => p.metadata!.name)).toEqual(["quiz-0", "quiz-1", "quiz-2"]);
    for (let i = 1; i < 3; i++) {
      const readyAt = Date.parse(
        String(pods[i - 1]!.status?.conditions?.find((c) => c.type === "Ready")?.lastTransitionTime),
      );
      expect(Date.parse(String(pods[i]!.metadata!.creationTimestamp))).toBeGreaterThanOrEqual(readyAt - 1000);
    }
    const ns = pods[0]!.metadata!.namespace!;
    for (const [from, to] of [
      ["quiz-0", 2],
      ["quiz-2", 0],
    ] as const) {
      const name = `quiz-${to}.quiz.${ns}.svc.cluster.local`;
      const r = await until(
        `${from} resolves ${name}`,
        60_000,
        async () => {
          const out = await l.kubectl(["exec", from, "--", "nslookup", name], { reject: false });
          return out.exitCode === 0 && out.stdout.includes(pods[to]!.status!.podIP!) ? out : undefined;
        },
        2000,
      );
      expect(r.stdout).toContain(pods[to]!.status!.podIP!);
      // and reaches it by that name
      const got = await l.kubectl(["exec", from, "--", "wget", "-q", "-O", "-", `http://${name}:8080/`]);
      expect(got.stdout.trim()).toBe(`quiz-${to}`);
    }
  }, 360_000);

  it("a CronJob fires on the minute and keeps its history limit", async () => {
    const seen = new Set<string>();
    await until(
      "2 jobs of every-minute, the older one trimmed",
      200_000,
      async () => {
        const owned = (await items<V1Job>(["get", "jobs"])).filter(
          (j) => j.metadata?.ownerReferences?.[0]?.name === "every-minute",
        );
        for (const j of owned) seen.add(j.metadata!.name!);
        const complete = owned.filter((j) => j.status?.conditions?.some((c) => c.type === "Complete"));
        // Two fired, and a finished one is gone again (history limit 1).
        return seen.size >= 2 && owned.length < seen.size && complete.length <= 1 ? true : undefined;
      },
      3000,
    );
    for (const n of seen) expect(n).toMatch(/^every-minute-\d+$/);
    const cj = await l.kubectlJson<V1CronJob>(["get", "cronjob", "every-minute"]);
    expect(cj.status?.lastScheduleTime).toBeDefined();
    // Scheduled on whole minutes.
    expect(new Date(String(cj.status?.lastScheduleTime)).getUTCSeconds()).toBe(0);
  }, 240_000);
});
