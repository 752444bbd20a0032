/**
 * The workload controllers of issue 19 on a real etcd + lab-server, hollow nodes (`lab-agent
 * --hollow`, one process each, run-to-completion pods finish after 1 s) and kubectl 1.32: a Job of
 * 3 completions succeeds and `kubectl wait --for=condition=complete` sees it; a failing Job stops
 * at its backoffLimit; an Indexed Job completes every index with JOB_COMPLETION_INDEX; a CronJob
 * fires on a clock running 60 times real time and keeps its history limit, and `kubectl create job
 * --from=cronjob/...` works; a DaemonSet has one pod per node, one on a node that joins later, and
 * rolls out, shows history and undoes through ControllerRevisions; a StatefulSet starts its pods in
 * order with stable names and hostnames in its headless Service's Endpoints; a
 * ReplicationController keeps its replicas and scales; bad specs get upstream's 422.
 */
import type { V1DaemonSet, V1Job, V1Pod, V1StatefulSet } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LabClient } from "../../api/client.ts";
import type { LoopsConfig } from "../../controlplane/controller-manager.ts";
import { runControllers, runScheduler } from "../../controlplane/controller-manager.ts";
import { clientLoops } from "../../controlplane/lab-client-loops.ts";
import { loopEventLine } from "../../controlplane/loops-main.ts";
import {
  kubectlResult,
  Loops,
  nodeReady,
  startHollowAgent,
  stopProcess,
  type KubectlResult,
  type LoggedProcess,
} from "../helpers/hollow-cluster.ts";
import { startTestApiServer, type TestApiServer } from "../helpers/test-apiserver.ts";
import { until as untilTrue } from "../helpers/until.ts";

/** The CronJob controller's clock: a minute every real second. */
const SPEED = 60;

let api: TestApiServer;
let client: LabClient;
const agents: LoggedProcess[] = [];
const loops = new Loops();
const logLines: string[] = [];

const kubectl = (...args: string[]): Promise<KubectlResult> =>
  kubectlResult(api.kubeconfig, args, { timeoutMs: 90_000 });
/** kubectl with `input` on its stdin. */
const kubectlIn = (input: string, ...args: string[]): Promise<KubectlResult> =>
  kubectlResult(api.kubeconfig, args, { timeoutMs: 90_000, input });
const startAgent = (name: string): void => {
  startHollowAgent(agents, api.kubeconfig, name, ["--hollow-run-seconds", "1"]);
};
const until = <T>(what: string, f: () => Promise<T | undefined | false>, ms = 60_000): Promise<T> =>
  untilTrue(what, f, ms, { everyMs: 250, context: () => `loops: ${logLines.slice(-10).join("\n")}` });

const pods = async (ns: string, selector: string): Promise<V1Pod[]> =>
  (await client.list("pods", { namespace: ns, labelSelector: selector })).items;

async function apply(yaml: string): Promise<void> {
  const r = await kubectlIn(yaml, "apply", "-f", "-");
  expect(r, r.stderr).toMatchObject({ code: 0 });
}

const t0 = Date.now();
const cronClock = { now: () => t0 + (Date.now() - t0) * SPEED, realMs: (ms: number) => ms / SPEED };

beforeAll(async () => {
  api = await startTestApiServer();
  client = await LabClient.fromKubeconfig(api.kubeconfig);
  for (const n of ["node-1", "node-2", "node-3"]) startAgent(n);
  await until(
    "3 Ready hollow nodes",
    async () => (await client.list("nodes")).items.filter(nodeReady).length === 3,
    90_000,
  );
  const cfg: LoopsConfig = {
    ...clientLoops(client),
    identity: "workloads-test",
    leaderElection: { leaseDurationSeconds: 4, renewDeadlineMs: 3000, retryPeriodMs: 500 },
    nodeLifecycle: { gracePeriodMs: 60_000, podEvictionTimeoutMs: 60_000, monitorPeriodMs: 1000 },
    job: { backoffBaseMs: 500 },
    cronClock,
    onEvent: (e) => logLines.push(loopEventLine(e, "workloads-test")),
  };
  loops.start((s) => runScheduler(cfg, s));
  loops.start((s) => runControllers(cfg, s));
  for (const ns of ["jobs", "cron", "ds", "sts", "rc"]) await kubectl("create", "namespace", ns);
}, 150_000);

afterAll(async () => {
  await loops.stop();
  for (const { proc } of agents) await stopProcess(proc);
  client?.close();
  await api?.stop();
});

describe("Job", () => {
  it("runs 3 completions 2 at a time to Complete; kubectl wait and get show it", async () => {
    await apply(`
apiVersion: batch/v1
kind: Job
metadata: {name: three, namespace: jobs}
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: lab/sample:latest, command: ["true"]}]
`);
    const waited = await kubectl(
      "-n",
      "jobs",
      "wait",
      "--for=condition=complete",
      "job/three",
      "--timeout=60s",
    );
    expect(waited, waited.stderr).toMatchObject({ code: 0, stdout: "job.batch/three condition met\n" });
    const job = await client.get("jobs", "three", "jobs");
    expect(job.status).toMatchObject({ succeeded: 3, active: 0 });
    expect(job.status?.completionTime).toBeDefined();
    // the generated selector and labels
    expect(job.spec?.selector?.matchLabels).toEqual({
      "batch.kubernetes.io/controller-uid": job.metadata?.uid,
    });
    const own = await pods("jobs", "batch.kubernetes.io/job-name=three");
    expect(own.filter((p) => p.status?.phase === "Succeeded")).toHaveLength(3);
    expect(own.every((p) => p.metadata?.ownerReferences?.[0]?.kind === "Job")).toBe(true);
    const got = await kubectl("-n", "jobs", "get", "job", "three");
    expect(got.stdout).toMatch(
      /^NAME\s+STATUS\s+COMPLETIONS\s+DURATION\s+AGE\nthree\s+Complete\s+3\/3\s+\d+s\s+\d+s\n$/,
    );
  });

  it("stops a failing Job at backoffLimit with BackoffLimitExceeded, its failures spaced by back-off", async () => {
    await apply(`
apiVersion: batch/v1
kind: Job
metadata: {name: fails, namespace: jobs}
spec:
  backoffLimit: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: lab/sample:latest, command: ["false"]}]
`);
    const waited = await kubectl(
      "-n",
      "jobs",
      "wait",
      "--for=condition=failed",
      "job/fails",
      "--timeout=60s",
    );
    expect(waited, waited.stderr).toMatchObject({ code: 0 });
    const job: V1Job = await client.get("jobs", "fails", "jobs");
    expect(job.status?.failed).toBe(3);
    expect(job.status?.conditions?.find((c) => c.type === "Failed")).toMatchObject({
      status: "True",
      reason: "BackoffLimitExceeded",
      message: "Job has reached the specified backoff limit",
    });
    const own = await pods("jobs", "job-name=fails");
    expect(own.map((p) => p.status?.phase)).toEqual(["Failed", "Failed", "Failed"]);
    // Each replacement waited its back-off (0.5 s, then 1 s) after the previous failure.
    const created = own.map((p) => Date.parse(String(p.metadata?.creationTimestamp))).sort();
    expect(created[2]! - created[0]!).toBeGreaterThanOrEqual(1000);
    const ev = await client.list("events", { namespace: "jobs", fieldSelector: "involvedObject.name=fails" });
    expect(ev.items.map((e) => e.reason)).toContain("BackoffLimitExceeded");
    const described = await kubectl("-n", "jobs", "describe", "job", "fails");
    expect(described.stdout).toMatch(
      /Warning\s+BackoffLimitExceeded\s+\S+\s+job-controller\s+Job has reached the specified backoff limit/,
    );
  });

  it("gives an Indexed Job's pods their completion index, annotation and env, and completes every index", async () => {
    await apply(`
apiVersion: batch/v1
kind: Job
metadata: {name: indexed, namespace: jobs}
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: lab/sample:latest, command: ["true"]}]
`);
    const waited = await kubectl(
      "-n",
      "jobs",
      "wait",
      "--for=condition=complete",
      "job/indexed",
      "--timeout=60s",
    );
    expect(waited, waited.stderr).toMatchObject({ code: 0 });
    expect((await client.get("jobs", "indexed", "jobs")).status?.completedIndexes).toBe("0-2");
    const own = await pods("jobs", "job-name=indexed");
    const idx = own.map((p) => p.metadata?.annotations?.["batch.kubernetes.io/job-completion-index"]).sort();
    expect(idx).toEqual(["0", "1", "2"]);
    for (const p of own) {
      const i = p.metadata?.annotations?.["batch.kubernetes.io/job-completion-index"];
      expect(p.metadata?.name).toMatch(new RegExp(`^indexed-${i}-`));
      expect(p.spec?.hostname).toBe(`indexed-${i}`);
      expect(p.spec?.containers[0]?.env).toContainEqual({
        name: "JOB_COMPLETION_INDEX",
        valueFrom: {
          fieldRef: { fieldPath: "metadata.annotations['batch.kubernetes.io/job-completion-index']" },
        },
      });
    }
  });

  it("refuses restartPolicy Always with upstream's 422", async () => {
    const r = await kubectlIn(
      `{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"always","namespace":"jobs"},"spec":{"template":{"spec":{"restartPolicy":"Always","containers":[{"name":"c","image":"x"}]}}}}`,
      "create",
      "-f",
      "-",
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(
      `spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"`,
    );
  });
});

describe("CronJob", () => {
  it("fires every (fast) minute, keeps successfulJobsHistoryLimit, and kubectl create job --from works", async () => {
    await apply(`
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick, namespace: cron}
spec:
  schedule: "*/1 * * * *"
  successfulJobsHistoryLimit: 2
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          volumes: [{name: scratch, emptyDir: {}}]
          containers:
          - name: c
            image: lab/sample:latest
            command: ["true"]
            env: [{name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
            volumeMounts: [{name: scratch, mountPath: /scratch}]
`);
    // Jobs are named after their scheduled minute; at least 4 distinct ones fire.
    const seen = new Set<string>();
    await until(
      "4 jobs of cronjob tick",
      async () => {
        for (const j of (await client.list("jobs", { namespace: "cron" })).items) seen.add(j.metadata!.name!);
        return seen.size >= 4;
      },
      60_000,
    );
    for (const name of seen) expect(name).toMatch(/^tick-\d{8}$/);
    // History: never more than 2 complete Jobs kept once they finished.
    await until("history trimmed to 2", async () => {
      const jobs = (await client.list("jobs", { namespace: "cron" })).items;
      const complete = jobs.filter((j) => j.status?.conditions?.some((c) => c.type === "Complete"));
      return complete.length === 2 && jobs.length <= 4;
    });
    await until("lastScheduleTime and lastSuccessfulTime in status", async () => {
      const cj = await client.get("cronjobs", "tick", "cron");
      return cj.status?.lastScheduleTime && cj.status.lastSuccessfulTime;
    });
    const got = await kubectl("-n", "cron", "get", "cronjob", "tick");
    expect(got.stdout).toMatch(
      /^NAME\s+SCHEDULE\s+TIMEZONE\s+SUSPEND\s+ACTIVE\s+LAST SCHEDULE\s+AGE\ntick\s+\*\/1 \* \* \* \*\s+<none>\s+False\s+\d+\s+\S+\s+\S+\n$/,
    );
    const manual = await kubectl("-n", "cron", "create", "job", "by-hand", "--from=cronjob/tick");
    expect(manual, manual.stderr).toMatchObject({ code: 0, stdout: "job.batch/by-hand created\n" });
    const w = await kubectl("-n", "cron", "wait", "--for=condition=complete", "job/by-hand", "--timeout=60s");
    expect(w, w.stderr).toMatchObject({ code: 0 });
    const byHand = await client.get("jobs", "by-hand", "cron");
    expect(byHand.metadata?.annotations?.["cronjob.kubernetes.io/instantiate"]).toBe("manual");
    // kubectl sent it as protobuf: the whole template arrived.
    const spec = byHand.spec?.template.spec;
    expect(spec?.volumes).toEqual([{ name: "scratch", emptyDir: {} }]);
    expect(spec?.containers[0]?.env).toEqual([
      { name: "POD", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
    ]);
    expect(spec?.containers[0]?.volumeMounts).toEqual([{ name: "scratch", mountPath: "/scratch" }]);
    const plain = await kubectl(
      "-n",
      "cron",
      "create",
      "job",
      "plain",
      "--image=lab/sample:latest",
      "--",
      "true",
    );
    expect(plain, plain.stderr).toMatchObject({ code: 0, stdout: "job.batch/plain created\n" });
    const made = await kubectl(
      "-n",
      "cron",
      "create",
      "cronjob",
      "nightly",
      "--image=lab/sample:latest",
      "--schedule=@daily",
    );
    expect(made, made.stderr).toMatchObject({ code: 0, stdout: "cronjob.batch/nightly created\n" });
    expect((await client.get("cronjobs", "nightly", "cron")).spec?.schedule).toBe("@daily");
    await kubectl("-n", "cron", "patch", "cronjob", "tick", "-p", '{"spec":{"suspend":true}}');
  }, 120_000);

  it("Forbid keeps the one running Job; Replace swaps it for the next one at each tick", async () => {
    // Suspended Jobs never finish, so each CronJob always has one running.
    const cron = (name: string, policy: string) => `
apiVersion: batch/v1
kind: CronJob
metadata: {name: ${name}, namespace: cron}
spec:
  schedule: "* * * * *"
  concurrencyPolicy: ${policy}
  jobTemplate:
    spec:
      suspend: true
      template:
        spec:
          restartPolicy: Never
          containers: [{name: c, image: lab/sample:latest}]
`;
    await apply(cron("forbid", "Forbid") + "---" + cron("replace", "Replace"));
    const owned = async (name: string): Promise<V1Job[]> =>
      (await client.list("jobs", { namespace: "cron" })).items.filter(
        (j) => j.metadata?.ownerReferences?.[0]?.name === name && !j.metadata?.deletionTimestamp,
      );
    const replaced = new Set<string>();
    await until(
      "replace to have gone through 3 jobs",
      async () => {
        for (const j of await owned("replace")) replaced.add(j.metadata!.name!);
        return replaced.size >= 3;
      },
      60_000,
    );
    // Replace: one live at a time; Forbid: still its first and only one.
    await until("replace has one job left", async () => (await owned("replace")).length === 1);
    const forbid = await owned("forbid");
    expect(forbid).toHaveLength(1);
    const cj = await client.get("cronjobs", "forbid", "cron");
    expect(cj.status?.active?.map((r) => r.name)).toEqual([forbid[0]!.metadata!.name]);
    await kubectl("-n", "cron", "delete", "cronjob", "forbid", "replace");
  }, 120_000);

  it("refuses a bad schedule and an unknown time zone", async () => {
    const r = await kubectlIn(
      `{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"bad","namespace":"cron"},"spec":{"schedule":"61 * * * *","timeZone":"Mars/Olympus","jobTemplate":{"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"x"}]}}}}}}`,
      "create",
      "-f",
      "-",
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`spec.schedule: Invalid value: "61 * * * *"`);
    expect(r.stderr).toContain(
      `spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus`,
    );
  });
});

describe("DaemonSet", () => {
  const dsPods = async (): Promise<V1Pod[]> =>
    (await pods("ds", "app=agent")).filter((p) => !p.metadata?.deletionTimestamp);

  it("runs one pod per node, one on a node that joins later, and rolls out / back through revisions", async () => {
    await apply(`
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: ds}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: c, image: "lab/sample:1"}]}
`);
    const onNodes = async (n: number, image: string): Promise<boolean> => {
      const ps = await dsPods();
      const nodes = new Set(ps.filter((p) => p.status?.phase === "Running").map((p) => p.spec?.nodeName));
      return ps.length === n && nodes.size === n && ps.every((p) => p.spec?.containers[0]?.image === image);
    };
    await until("a DaemonSet pod Running on each of 3 nodes", () => onNodes(3, "lab/sample:1"));
    const st = await kubectl("-n", "ds", "rollout", "status", "ds/agent", "--timeout=60s");
    expect(st, st.stderr).toMatchObject({
      code: 0,
      stdout: expect.stringContaining('daemon set "agent" successfully rolled out'),
    });
    startAgent("node-4");
    await until("a DaemonSet pod on the late node-4", () => onNodes(4, "lab/sample:1"));
    expect((await dsPods()).map((p) => p.spec?.nodeName).sort()).toEqual([
      "node-1",
      "node-2",
      "node-3",
      "node-4",
    ]);
    const got = await kubectl("-n", "ds", "get", "ds", "agent");
    expect(got.stdout).toMatch(
      /^NAME\s+DESIRED\s+CURRENT\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+NODE SELECTOR\s+AGE\nagent\s+4\s+4\s+4\s+4\s+4\s+<none>\s+\S+\n$/,
    );
    // A new image rolls out; history shows both revisions; undo brings the first image back.
    expect((await kubectl("-n", "ds", "set", "image", "ds/agent", "c=lab/sample:2")).code).toBe(0);
    const st2 = await kubectl("-n", "ds", "rollout", "status", "ds/agent", "--timeout=90s");
    expect(st2, st2.stderr).toMatchObject({ code: 0 });
    await until("4 pods at lab/sample:2", () => onNodes(4, "lab/sample:2"));
    const hist = await kubectl("-n", "ds", "rollout", "history", "ds/agent");
    expect(hist.stdout).toMatch(/REVISION\s+CHANGE-CAUSE\n1\s+<none>\n2\s+<none>\n/);
    const undo = await kubectl("-n", "ds", "rollout", "undo", "ds/agent");
    expect(undo, undo.stderr).toMatchObject({ code: 0, stdout: "daemonset.apps/agent rolled back\n" });
    await until("4 pods back at lab/sample:1", () => onNodes(4, "lab/sample:1"), 90_000);
    const hist2 = await kubectl("-n", "ds", "rollout", "history", "ds/agent");
    expect(hist2.stdout).toMatch(/REVISION\s+CHANGE-CAUSE\n2\s+<none>\n3\s+<none>\n/);
    // maxSurge: the new pod starts beside the old one, which goes once the new one is available.
    const surge = { spec: { updateStrategy: { rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } } } };
    expect((await kubectl("-n", "ds", "patch", "ds", "agent", "-p", JSON.stringify(surge))).code).toBe(0);
    expect((await kubectl("-n", "ds", "set", "image", "ds/agent", "c=lab/sample:3")).code).toBe(0);
    const st3 = await kubectl("-n", "ds", "rollout", "status", "ds/agent", "--timeout=90s");
    expect(st3, st3.stderr).toMatchObject({ code: 0 });
    await until("4 pods at lab/sample:3", () => onNodes(4, "lab/sample:3"), 90_000);
    const ds: V1DaemonSet = await client.get("daemonsets", "agent", "ds");
    expect(ds.status).toMatchObject({
      desiredNumberScheduled: 4,
      updatedNumberScheduled: 4,
      numberAvailable: 4,
    });
  }, 240_000);

  it("leaves out nodes its nodeSelector does not match and tainted nodes it does not tolerate", async () => {
    await kubectl("label", "node", "node-2", "disk=ssd");
    await kubectl("taint", "node", "node-3", "node-role.kubernetes.io/control-plane=:NoSchedule");
    await apply(`
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: picky, namespace: ds}
spec:
  selector: {matchLabels: {app: picky}}
  template:
    metadata: {labels: {app: picky}}
    spec:
      nodeSelector: {disk: ssd}
      containers: [{name: c, image: lab/sample:latest}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: tolerant, namespace: ds}
spec:
  selector: {matchLabels: {app: tolerant}}
  template:
    metadata: {labels: {app: tolerant}}
    spec:
      tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]
      containers: [{name: c, image: lab/sample:latest}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: plain, namespace: ds}
spec:
  selector: {matchLabels: {app: plain}}
  template:
    metadata: {labels: {app: plain}}
    spec: {containers: [{name: c, image: lab/sample:latest}]}
`);
    const nodesOf = async (app: string): Promise<string[]> =>
      (await pods("ds", `app=${app}`))
        .filter((p) => p.status?.phase === "Running")
        .map((p) => p.spec!.nodeName!)
        .sort();
    await until("picky on node-2 only", async () => (await nodesOf("picky")).join() === "node-2");
    await until("tolerant on all 4", async () => (await nodesOf("tolerant")).length === 4);
    await until(
      "plain on the 3 untainted",
      async () => (await nodesOf("plain")).join() === "node-1,node-2,node-4",
    );
    await kubectl("taint", "node", "node-3", "node-role.kubernetes.io/control-plane-");
  }, 120_000);
});

describe("StatefulSet", () => {
  it("starts web-0, web-1, web-2 in order, each after the one before is Ready, named in the headless Service", async () => {
    await apply(`
apiVersion: v1
kind: Service
metadata: {name: web, namespace: sts}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: sts}
spec:
  serviceName: web
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: "lab/sample:1", ports: [{containerPort: 80}]}]}
`);
    const st = await kubectl("-n", "sts", "rollout", "status", "sts/web", "--timeout=90s");
    expect(st, st.stderr).toMatchObject({ code: 0 });
    const ps = (await pods("sts", "app=web")).sort((a, b) =>
      a.metadata!.name!.localeCompare(b.metadata!.name!),
    );
    expect(ps.map((p) => p.metadata?.name)).toEqual(["web-0", "web-1", "web-2"]);
    for (const [i, p] of ps.entries()) {
      expect(p.spec).toMatchObject({ hostname: `web-${i}`, subdomain: "web" });
      expect(p.metadata?.labels?.["statefulset.kubernetes.io/pod-name"]).toBe(`web-${i}`);
    }
    // Ordered: each pod was created no earlier than the one before became Ready.
    for (let i = 1; i < 3; i++) {
      const readyAt = Date.parse(
        String(ps[i - 1]!.status?.conditions?.find((c) => c.type === "Ready")?.lastTransitionTime),
      );
      expect(Date.parse(String(ps[i]!.metadata?.creationTimestamp))).toBeGreaterThanOrEqual(readyAt - 1000);
    }
    const hostnames = await until("endpoints with hostnames", async () => {
      const ep = await client.get("endpoints", "web", "sts");
      const names = (ep.subsets ?? []).flatMap((s) => (s.addresses ?? []).map((a) => a.hostname)).sort();
      return names.length === 3 && names;
    });
    expect(hostnames).toEqual(["web-0", "web-1", "web-2"]);
    const got = await kubectl("-n", "sts", "get", "sts", "web");
    expect(got.stdout).toMatch(/^NAME\s+READY\s+AGE\nweb\s+3\/3\s+\S+\n$/);
  }, 120_000);

  it("rolls an update from the highest ordinal down to the partition, and scales down from the top", async () => {
    await kubectl(
      "-n",
      "sts",
      "patch",
      "sts",
      "web",
      "-p",
      '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":1}}}}',
    );
    expect((await kubectl("-n", "sts", "set", "image", "sts/web", "c=lab/sample:2")).code).toBe(0);
    const imageOf = async (): Promise<Record<string, string>> =>
      Object.fromEntries(
        (await pods("sts", "app=web"))
          .filter((p) => isReadyPod(p))
          .map((p) => [p.metadata!.name!, p.spec!.containers[0]!.image!]),
      );
    await until("web-1 and web-2 at :2, web-0 still :1", async () => {
      const m = await imageOf();
      return m["web-0"] === "lab/sample:1" && m["web-1"] === "lab/sample:2" && m["web-2"] === "lab/sample:2";
    });
    // the status follows the pods by a reconcile
    const sts = await until("status.updatedReplicas 2", async () => {
      const s: V1StatefulSet = await client.get("statefulsets", "web", "sts");
      return s.status?.updatedReplicas === 2 && s;
    });
    expect(sts.status?.updatedReplicas).toBe(2);
    expect(sts.status?.currentRevision).not.toBe(sts.status?.updateRevision);
    await kubectl(
      "-n",
      "sts",
      "patch",
      "sts",
      "web",
      "-p",
      '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}',
    );
    await until(
      "all at :2",
      async () => Object.values(await imageOf()).filter((i) => i === "lab/sample:2").length === 3,
    );
    await until("currentRevision = updateRevision", async () => {
      const s: V1StatefulSet = await client.get("statefulsets", "web", "sts");
      return s.status?.currentRevision === s.status?.updateRevision && s.status?.updatedReplicas === 3;
    });
    expect((await kubectl("-n", "sts", "scale", "sts/web", "--replicas=1")).code).toBe(0);
    await until("only web-0 left", async () => {
      const names = (await pods("sts", "app=web")).map((p) => p.metadata?.name);
      return names.join() === "web-0";
    });
  }, 120_000);

  it("Parallel creates every pod at once; OrderedReady waits for each (pods that cannot be scheduled)", async () => {
    const sts = (name: string, policy: string) => `
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: ${name}, namespace: sts}
spec:
  serviceName: ${name}
  replicas: 3
  podManagementPolicy: ${policy}
  selector: {matchLabels: {app: ${name}}}
  template:
    metadata: {labels: {app: ${name}}}
    spec:
      nodeSelector: {no-such: node}
      containers: [{name: c, image: lab/sample:latest}]
`;
    await apply(sts("par", "Parallel") + "---" + sts("ord", "OrderedReady"));
    const names = async (app: string): Promise<string> =>
      (await pods("sts", `app=${app}`))
        .map((p) => p.metadata!.name!)
        .sort()
        .join();
    await until("par-0..2 all created", async () => (await names("par")) === "par-0,par-1,par-2");
    await until("ord-0 created", async () => (await names("ord")) === "ord-0");
    await new Promise((r) => setTimeout(r, 2000));
    expect(await names("ord")).toBe("ord-0"); // ord-0 is never Ready, so ord-1 never comes
    await kubectl("-n", "sts", "delete", "sts", "par", "ord");
  });

  it("OnDelete: a new template reaches a pod only when that pod is deleted", async () => {
    await apply(`
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: od, namespace: sts}
spec:
  serviceName: od
  replicas: 2
  updateStrategy: {type: OnDelete}
  selector: {matchLabels: {app: od}}
  template:
    metadata: {labels: {app: od}}
    spec: {containers: [{name: c, image: "lab/sample:1"}]}
`);
    const images = async (): Promise<string> =>
      (await pods("sts", "app=od"))
        .filter(isReadyPod)
        .sort((a, b) => a.metadata!.name!.localeCompare(b.metadata!.name!))
        .map((p) => `${p.metadata!.name}=${p.spec!.containers[0]!.image}`)
        .join();
    await until(
      "od-0 and od-1 ready",
      async () => (await images()) === "od-0=lab/sample:1,od-1=lab/sample:1",
    );
    expect((await kubectl("-n", "sts", "set", "image", "sts/od", "c=lab/sample:2")).code).toBe(0);
    await new Promise((r) => setTimeout(r, 3000));
    expect(await images()).toBe("od-0=lab/sample:1,od-1=lab/sample:1");
    const del = await kubectl("-n", "sts", "delete", "pod", "od-1", "--wait=false");
    expect(del, del.stderr).toMatchObject({ code: 0 });
    await until(
      "od-1 recreated at :2",
      async () => (await images()) === "od-0=lab/sample:1,od-1=lab/sample:2",
    );
  });

  it("accepts volumeClaimTemplates; its pod waits Pending with an event naming the missing claim", async () => {
    await apply(`
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: sts}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: c, image: lab/sample:latest, volumeMounts: [{name: data, mountPath: /data}]}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
`);
    const pod = await until("db-0 created", async () => (await pods("sts", "app=db"))[0]);
    expect(pod.spec?.volumes).toContainEqual({
      name: "data",
      persistentVolumeClaim: { claimName: "data-db-0" },
    });
    await until("FailedScheduling naming data-db-0", async () => {
      const ev = await client.list("events", { namespace: "sts", fieldSelector: "involvedObject.name=db-0" });
      return ev.items.some((e) => e.reason === "FailedScheduling" && e.message?.includes('"data-db-0"'));
    });
    expect((await client.get("pods", "db-0", "sts")).status?.phase).toBe("Pending");
  });
});

const isReadyPod = (p: V1Pod): boolean =>
  !p.metadata?.deletionTimestamp &&
  !!p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");

describe("ReplicationController", () => {
  it("keeps its replicas ready and scales", async () => {
    await apply(`
apiVersion: v1
kind: ReplicationController
metadata: {name: kubia, namespace: rc}
spec:
  replicas: 2
  selector: {app: kubia}
  template:
    metadata: {labels: {app: kubia}}
    spec: {containers: [{name: c, image: lab/sample:latest}]}
`);
    await until(
      "2 ready",
      async () => (await client.get("replicationcontrollers", "kubia", "rc")).status?.readyReplicas === 2,
    );
    expect((await kubectl("-n", "rc", "scale", "rc/kubia", "--replicas=3")).code).toBe(0);
    await until(
      "3 ready",
      async () => (await client.get("replicationcontrollers", "kubia", "rc")).status?.readyReplicas === 3,
    );
    const got = await kubectl("-n", "rc", "get", "rc", "kubia");
    expect(got.stdout).toMatch(/^NAME\s+DESIRED\s+CURRENT\s+READY\s+AGE\nkubia\s+3\s+3\s+3\s+\S+\n$/);
    // deleting it takes its pods along (garbage collector)
    expect((await kubectl("-n", "rc", "delete", "rc", "kubia")).code).toBe(0);
    await until("pods gone", async () => (await pods("rc", "app=kubia")).length === 0);
  });
});
