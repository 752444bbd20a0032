/**
 * `kubectl rollout` end to end: stock kubectl against a real etcd and lab-server, with the
 * controller manager and scheduler running and the test playing the kubelet (FakeKubelet). What a
 * user sees after `kubectl rollout undo` is that the old ReplicaSet (same name) is scaled back up,
 * as in Kubernetes, and `kubectl rollout history` renumbers it.
 */
import { setMaxListeners } from "node:events";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { V1Pod, V1ReplicaSet } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LabClient } from "../../api/client.ts";
import { runControllerManager, runScheduler } from "../../controlplane/controller-manager.ts";
import { clientLoops } from "../../controlplane/lab-client-loops.ts";
import { FakeKubelet } from "../helpers/fake-kubelet.ts";
import { kubectlFor } from "../helpers/kubectl.ts";
import { until } from "../helpers/until.ts";
import { startTestApiServer, type TestApiServer } from "../helpers/test-apiserver.ts";

let api: TestApiServer;
let client: LabClient;
let kubelet: FakeKubelet;
const stop = new AbortController();
setMaxListeners(0, stop.signal);
let loops: Promise<void>[] = [];
const errors: string[] = [];

/** kubectl's output; a failing kubectl throws with its stderr. */
const kubectl = kubectlFor(() => api.kubeconfig, 90_000);

const live = (pods: V1Pod[]): V1Pod[] => pods.filter((p) => !p.metadata?.deletionTimestamp);
const owner = (o: V1Pod | V1ReplicaSet): string | undefined =>
  o.metadata?.ownerReferences?.find((r) => r.controller)?.name;

async function replicaSets(): Promise<V1ReplicaSet[]> {
  return (await client.list("replicasets", { namespace: "default", labelSelector: "app=web" })).items;
}

/** Waits until the Deployment's 2 live pods all belong to ReplicaSet `rs`, and no others remain. */
async function podsOf(rs: string): Promise<V1Pod[]> {
  return until(
    `2 pods of ${rs} and no others`,
    async () => {
      const pods = (await client.list("pods", { namespace: "default", labelSelector: "app=web" })).items;
      return pods.length === 2 && live(pods).every((p) => owner(p) === rs) ? pods : undefined;
    },
    60_000,
  );
}

/** Revision numbers listed by `kubectl rollout history`. */
async function history(): Promise<number[]> {
  const out = await kubectl("rollout", "history", "deployment/web");
  return [...out.matchAll(/^(\d+)\s/gm)].map((m) => Number(m[1]));
}

async function rolledOut(): Promise<void> {
  await kubectl("rollout", "status", "deployment/web", "--timeout=60s");
}

beforeAll(async () => {
  api = await startTestApiServer();
  client = await LabClient.fromKubeconfig(api.kubeconfig);
  kubelet = new FakeKubelet(client, ["node-a"]);
  await kubelet.register();
  kubelet.start();
  const cfg = {
    ...clientLoops(client),
    identity: "cm",
    leaderElection: { leaseDurationSeconds: 4, renewDeadlineMs: 3000, retryPeriodMs: 500 },
    onEvent: (e: { kind: string; component?: string; detail?: string }) => {
      if (e.kind === "error") errors.push(`${e.component}: ${e.detail}`);
    },
  };
  loops = [runControllerManager(cfg, stop.signal), runScheduler(cfg, stop.signal)];
});

afterAll(async () => {
  if (errors.length) console.warn(`loop errors (${errors.length}):\n${errors.slice(0, 20).join("\n")}`);
  kubelet?.stop();
  stop.abort();
  await Promise.allSettled(loops);
  client?.close();
  await api?.stop();
});

describe("kubectl rollout against lab-server", () => {
  let original = "";
  let withEnv = "";

  it("rolls out a new template with kubectl set env, as revision 2", async () => {
    const manifest = join(api.pki.dir, "web.yaml");
    await writeFile(
      manifest,
      [
        "apiVersion: apps/v1",
        "kind: Deployment",
        "metadata: {name: web}",
        "spec:",
        "  replicas: 2",
        "  selector: {matchLabels: {app: web}}",
        "  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}",
        "  template:",
        "    metadata: {labels: {app: web}}",
        "    spec:",
        "      containers:",
        "      - name: web",
        "        image: nginx:1",
        "        resources: {requests: {cpu: '0.1', memory: 64Mi}}",
        "",
      ].join("\n"),
    );
    await kubectl("apply", "-f", manifest);
    await rolledOut();
    original = (await replicaSets())[0]?.metadata?.name ?? "";
    await podsOf(original);
    await kubectl("set", "env", "deployment/web", "GREETING=hello");
    await rolledOut();
    withEnv = (await replicaSets()).find((rs) => rs.metadata?.name !== original)?.metadata?.name ?? "";
    expect(withEnv).not.toBe("");
    await podsOf(withEnv);
    expect(await history()).toEqual([1, 2]);
  });

  it("rollout undo scales the ORIGINAL ReplicaSet back up; history lists revisions 2 and 3", async () => {
    expect(await kubectl("rollout", "undo", "deployment/web")).toContain("rolled back");
    await rolledOut();
    const pods = await podsOf(original);
    expect(pods.every((p) => !p.spec?.containers[0]?.env?.length)).toBe(true);
    const rss = await replicaSets();
    expect(rss.map((rs) => rs.metadata?.name).sort()).toEqual([original, withEnv].sort());
    const revived = rss.find((rs) => rs.metadata?.name === original)!;
    expect(revived.metadata?.annotations?.["deployment.kubernetes.io/revision"]).toBe("3");
    expect(revived.metadata?.annotations?.["deployment.kubernetes.io/revision-history"]).toBe("1");
    expect(await history()).toEqual([2, 3]);
    const d = await client.get("deployments", "web", "default");
    expect(d.metadata?.annotations?.["deployment.kubernetes.io/revision"]).toBe("3");
    // Revision 2's template, as kubectl shows it.
    const rev2 = await kubectl("rollout", "history", "deployment/web", "--revision=2");
    expect(rev2).toMatch(/GREETING:\s+hello/);
  });

  it("rollout undo --to-revision=2 brings back the env ReplicaSet; unknown revisions are refused", async () => {
    await kubectl("rollout", "undo", "deployment/web", "--to-revision=2");
    await rolledOut();
    const pods = await podsOf(withEnv);
    expect(pods[0]?.spec?.containers[0]?.env).toEqual([{ name: "GREETING", value: "hello" }]);
    expect(await history()).toEqual([3, 4]);
    expect(await replicaSets()).toHaveLength(2);
    expect(await kubectl.fails("rollout", "undo", "deployment/web", "--to-revision=9")).toContain(
      "unable to find specified revision 9",
    );
    // Undoing to the current template changes nothing (kubectl compares client-side).
    expect(await kubectl("rollout", "undo", "deployment/web", "--to-revision=4")).toContain(
      "skipped rollback",
    );
  });

  it("a paused Deployment keeps its pods through a template change; resume rolls it out; restart too", async () => {
    await kubectl("rollout", "pause", "deployment/web");
    expect(await kubectl.fails("rollout", "undo", "deployment/web")).toContain(
      "cannot rollback a paused deployment",
    );
    await kubectl("set", "env", "deployment/web", "GREETING=paused");
    // Once the controller has seen that change, still no ReplicaSet for it.
    await until(
      "the paused change observed",
      async () => {
        const d = await client.get("deployments", "web", "default");
        return (d.status?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 1);
      },
      60_000,
    );
    expect(await replicaSets()).toHaveLength(2);
    await podsOf(withEnv);
    await kubectl("rollout", "resume", "deployment/web");
    await rolledOut();
    const paused = (await replicaSets()).find(
      (rs) => rs.metadata?.name !== original && rs.metadata?.name !== withEnv,
    );
    expect(paused).toBeDefined();
    await podsOf(paused!.metadata!.name!);
    // kubectl rollout restart sets an annotation on the template: a new ReplicaSet, revision 6.
    await kubectl("rollout", "restart", "deployment/web");
    await rolledOut();
    const restarted = (await replicaSets()).find(
      (rs) => ![original, withEnv, paused!.metadata!.name].includes(rs.metadata?.name),
    );
    expect(
      restarted?.spec?.template?.metadata?.annotations?.["kubectl.kubernetes.io/restartedAt"],
    ).toBeDefined();
    await podsOf(restarted!.metadata!.name!);
    expect(await history()).toEqual([3, 4, 5, 6]);
  });

  it("revisionHistoryLimit removes the oldest empty ReplicaSets", async () => {
    await kubectl("patch", "deployment/web", "-p", '{"spec":{"revisionHistoryLimit":1}}');
    const rss = await until(
      "one old ReplicaSet left",
      async () => {
        const items = await replicaSets();
        return items.length === 2 ? items : undefined;
      },
      60_000,
    );
    // Revisions 3 (the original) and 4 (env) were the oldest; 5 stays as the one to undo to.
    expect(rss.map((rs) => rs.metadata?.name)).not.toContain(original);
    expect(rss.map((rs) => rs.metadata?.name)).not.toContain(withEnv);
    expect(await history()).toEqual([5, 6]);
  });
});
