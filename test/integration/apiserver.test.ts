import { execFile } from "node:child_process";
import { request } from "node:https";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { execa } from "execa";
import { renderReadyzCheck } from "../../templates/keepalived.ts";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AppsV1Api,
  CoreV1Api,
  KubeConfig,
  Watch,
  type V1ConfigMap,
  type V1Pod,
} from "@kubernetes/client-node";
import { ApiStatusError, LabClient } from "../../api/client.ts";
import { identity, rawRequest } from "../helpers/raw-https.ts";
import { kubeconfigYaml, startTestApiServer, type TestApiServer } from "../helpers/test-apiserver.ts";

const run = promisify(execFile);

let s: TestApiServer;
let client: LabClient;

async function kubectl(...args: string[]): Promise<string> {
  const { stdout } = await run("/usr/bin/kubectl", args, {
    env: { ...process.env, KUBECONFIG: s.kubeconfig },
    timeout: 30_000,
  });
  return stdout;
}

async function kubectlFails(...args: string[]): Promise<string> {
  try {
    await kubectl(...args);
  } catch (err) {
    return String((err as { stderr?: string }).stderr);
  }
  throw new Error(`kubectl ${args.join(" ")} succeeded, expected a failure`);
}

const deployment = (replicas: number, image: string): string => `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: ${replicas}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: ${image}
        ports: [{containerPort: 80}]
        env: [{name: MODE, value: one}, {name: KEEP, value: "yes"}]
`;

beforeAll(async () => {
  s = await startTestApiServer({ bookmarkIntervalMs: 300 });
  client = await LabClient.fromKubeconfig(s.kubeconfig);
});

afterAll(async () => {
  client?.close();
  await s?.stop();
});

describe("lab-server with kubectl", () => {
  it("serves version, discovery and the default namespaces and kubernetes service", async () => {
    expect(await kubectl("version", "-o", "json")).toContain("v1.32.0-lab");
    const ns = await kubectl("get", "namespaces");
    expect(ns).toMatch(/^NAME\s+STATUS\s+AGE/);
    for (const n of ["default", "kube-system", "kube-public", "kube-node-lease"]) expect(ns).toContain(n);
    const svc = await kubectl("get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}");
    expect(svc).toBe("10.96.0.1");
    expect(await kubectl("api-resources", "--api-group=apps")).toMatch(
      /deployments\s+deploy\s+apps\/v1\s+true\s+Deployment/,
    );
  });

  it("applies a manifest twice with a change, merging lists by key", async () => {
    const dir = s.pki.dir;
    await writeFile(join(dir, "web.yaml"), deployment(2, "nginx:1.25"));
    expect(await kubectl("apply", "-f", join(dir, "web.yaml"))).toContain("deployment.apps/web created");
    await kubectl(
      "patch",
      "deployment",
      "web",
      "--type=json",
      "-p",
      '[{"op":"add","path":"/metadata/annotations/keep","value":"me"}]',
    );
    await writeFile(
      join(dir, "web.yaml"),
      deployment(3, "nginx:1.26").replace(/env: .*\n/, "env: [{name: MODE, value: two}]\n"),
    );
    expect(await kubectl("apply", "-f", join(dir, "web.yaml"))).toContain("deployment.apps/web configured");
    const d = JSON.parse(await kubectl("get", "deploy", "web", "-o", "json")) as {
      metadata: { generation: number; annotations: Record<string, string> };
      spec: {
        replicas: number;
        strategy: { type: string };
        template: { spec: { containers: { image: string; env: unknown[]; imagePullPolicy: string }[] } };
      };
    };
    expect(d.spec.replicas).toBe(3);
    expect(d.spec.template.spec.containers[0]!.image).toBe("nginx:1.26");
    // KEEP was in the last applied configuration and is gone from the new one: apply removes it.
    expect(d.spec.template.spec.containers[0]!.env).toEqual([{ name: "MODE", value: "two" }]);
    expect(d.spec.template.spec.containers[0]!.imagePullPolicy).toBe("IfNotPresent");
    expect(d.spec.strategy.type).toBe("RollingUpdate");
    expect(d.metadata.annotations.keep).toBe("me");
    expect(d.metadata.generation).toBe(2);
    expect(await kubectl("get", "deploy", "web", "-o", "yaml")).toContain("kind: Deployment");
  });

  it("labels, annotates, scales and patches with all three patch types", async () => {
    await kubectl("label", "deploy", "web", "tier=front");
    await kubectl("annotate", "deploy", "web", "owner=team-a");
    await kubectl("scale", "deploy", "web", "--replicas=5");
    let d = JSON.parse(await kubectl("get", "deploy", "-l", "tier=front", "-o", "json")) as {
      items: { spec: { replicas: number }; metadata: { annotations: Record<string, string> } }[];
    };
    expect(d.items[0]!.spec.replicas).toBe(5);
    expect(d.items[0]!.metadata.annotations.owner).toBe("team-a");
    await kubectl("patch", "deploy", "web", "--type=merge", "-p", '{"spec":{"replicas":1}}');
    await kubectl(
      "patch",
      "deploy",
      "web",
      "--type=json",
      "-p",
      '[{"op":"replace","path":"/spec/replicas","value":2}]',
    );
    await kubectl(
      "patch",
      "deploy",
      "web",
      "-p",
      '{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}',
    );
    const out = await kubectl(
      "get",
      "deploy",
      "web",
      "-o",
      "jsonpath={.spec.replicas} {.spec.template.spec.containers[*].name}",
    );
    expect(out).toBe("2 web sidecar");
    d = JSON.parse(await kubectl("get", "deploy", "-l", "tier notin (back)", "-o", "json"));
    expect(d.items).toHaveLength(1);
    const table = await kubectl("get", "deploy", "web");
    expect(table).toMatch(/^NAME\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+AGE\nweb\s+0\/2\s+0\s+0\s+\d+s/);
  });

  it("replaces, describes and deletes", async () => {
    const svcFile = join(s.pki.dir, "svc.yaml");
    await writeFile(
      svcFile,
      "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n",
    );
    await kubectl("apply", "-f", svcFile);
    const svcTable = await kubectl("get", "svc", "web");
    expect(svcTable).toMatch(
      /^NAME\s+TYPE\s+CLUSTER-IP\s+EXTERNAL-IP\s+PORT\(S\)\s+AGE\nweb\s+ClusterIP\s+10\.96\.0\.\d+\s+<none>\s+80\/TCP/,
    );
    const cm = JSON.parse(await kubectl("get", "deploy", "web", "-o", "json")) as Record<string, unknown>;
    (cm.metadata as Record<string, unknown>).labels = { app: "web", replaced: "yes" };
    const f = join(s.pki.dir, "replace.json");
    await writeFile(f, JSON.stringify(cm));
    await kubectl("replace", "-f", f);
    expect(await kubectl("get", "deploy", "web", "-o", "jsonpath={.metadata.labels.replaced}")).toBe("yes");
    expect(await kubectl("describe", "deploy", "web")).toMatch(/Replicas:\s+2 desired/);
    expect(await kubectl("describe", "svc", "web")).toMatch(/TargetPort:\s+8080\/TCP/);
    expect(await kubectl("delete", "deploy", "web", "--cascade=background")).toContain(
      'deployment.apps "web" deleted',
    );
    expect(await kubectlFails("get", "deploy", "web")).toContain("NotFound");
  });

  it("accepts the protobuf bodies of kubectl create's typed clients", async () => {
    await kubectl("create", "namespace", "team-c");
    await kubectl("-n", "team-c", "create", "configmap", "conf", "--from-literal=a=b");
    await kubectl("-n", "team-c", "create", "secret", "generic", "sec", "--from-literal=x=y");
    await kubectl("-n", "team-c", "create", "serviceaccount", "robot");
    await kubectl("-n", "team-c", "create", "service", "clusterip", "front", "--tcp=80:8080");
    await kubectl(
      "-n",
      "team-c",
      "create",
      "deployment",
      "api",
      "--image=nginx:1.25",
      "--replicas=2",
      "--port=80",
    );
    expect(await client.get("configmaps", "conf", "team-c")).toMatchObject({ data: { a: "b" } });
    expect(await client.get("secrets", "sec", "team-c")).toMatchObject({
      type: "Opaque",
      data: { x: Buffer.from("y").toString("base64") },
    });
    expect(await client.get("services", "front", "team-c")).toMatchObject({
      spec: { ports: [{ port: 80, targetPort: 8080, protocol: "TCP" }], selector: { app: "front" } },
    });
    const d = await client.get("deployments", "api", "team-c");
    expect(d.spec).toMatchObject({ replicas: 2, selector: { matchLabels: { app: "api" } } });
    expect(d.spec?.template.spec?.containers[0]).toMatchObject({
      name: "nginx",
      image: "nginx:1.25",
      ports: [{ containerPort: 80 }],
    });
  });

  it("rejects invalid objects with 422 listing each field", async () => {
    const f = join(s.pki.dir, "bad.json");
    await writeFile(
      f,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "Bad_Name" },
        spec: { containers: [{ name: "c" }] },
      }),
    );
    const err = await kubectlFails("apply", "-f", f);
    expect(err).toContain('The Pod "Bad_Name" is invalid');
    expect(err).toContain("metadata.name: Invalid value");
    expect(err).toContain("spec.containers[0].image: Required value");
  });

  it("streams `kubectl get -w` rows as pods change", async () => {
    const child = execFile("/usr/bin/kubectl", ["get", "pods", "-w"], {
      env: { ...process.env, KUBECONFIG: s.kubeconfig },
    });
    let out = "";
    child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
    await new Promise((r) => setTimeout(r, 1500));
    await kubectl("run", "watched", "--image=busybox", "--", "sleep", "1000");
    await client.bind("default", "watched", "node-a");
    const deadline = Date.now() + 10_000;
    while (!/watched\s+0\/1\s+Pending/.test(out) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    child.kill();
    expect(out).toMatch(/NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE/);
    expect(out).toMatch(/watched\s+0\/1\s+Pending\s+0/);
    expect(await kubectl("get", "pods", "-o", "wide", "--field-selector", "spec.nodeName=node-a")).toMatch(
      /watched\s+0\/1\s+Pending\s+0\s+\S+\s+<none>\s+node-a/,
    );
  });

  it("waits for a condition and deletes a bound pod gracefully", async () => {
    expect(await kubectl("wait", "--for=condition=PodScheduled", "pod/watched", "--timeout=10s")).toContain(
      "condition met",
    );
    // The pod is on a node: deletion only marks it; the node agent finishes it.
    await kubectl("delete", "pod", "watched", "--wait=false");
    const pod = await client.get("pods", "watched", "default");
    expect(pod.metadata?.deletionTimestamp).toBeDefined();
    expect(pod.metadata?.deletionGracePeriodSeconds).toBe(30);
    expect(await kubectl("get", "pod", "watched")).toMatch(/watched\s+0\/1\s+Terminating/);
    await client.delete("pods", "watched", "default", { gracePeriodSeconds: 0 });
    await expect(client.get("pods", "watched", "default")).rejects.toMatchObject({ code: 404 });
  });

  it("shows nodes with STATUS/ROLES/AGE/VERSION", async () => {
    await client.create("nodes", {
      metadata: { name: "node-a", labels: { "node-role.kubernetes.io/worker": "" } },
    });
    await client.updateStatus("nodes", {
      ...(await client.get("nodes", "node-a")),
      status: {
        conditions: [{ type: "Ready", status: "True" }],
        nodeInfo: { kubeletVersion: "v1.32.0-lab" } as never,
      },
    });
    expect(await kubectl("get", "nodes")).toMatch(
      /NAME\s+STATUS\s+ROLES\s+AGE\s+VERSION\nnode-a\s+Ready\s+worker\s+\d+s\s+v1\.32\.0-lab/,
    );
    expect(await kubectl("describe", "node", "node-a")).toContain("node-role.kubernetes.io/worker");
  });

  it("deletes a namespace with its contents", async () => {
    await client.create("namespaces", { metadata: { name: "team-b" } });
    await client.create("configmaps", { metadata: { name: "c", namespace: "team-b" }, data: { a: "b" } });
    await kubectl("delete", "namespace", "team-b");
    await expect(client.get("namespaces", "team-b")).rejects.toMatchObject({ code: 404 });
    await expect(client.get("configmaps", "c", "team-b")).rejects.toMatchObject({ code: 404 });
    await expect(
      client.create("configmaps", { metadata: { name: "c", namespace: "nope" } }),
    ).rejects.toMatchObject({ code: 404 });
  });
});

describe("lab-server with @kubernetes/client-node", () => {
  let kc: KubeConfig;
  beforeAll(() => {
    kc = new KubeConfig();
    kc.loadFromFile(s.kubeconfig);
  });

  it("lists with limit/continue and selectors, and conflicts on a stale update", async () => {
    const core = kc.makeApiClient(CoreV1Api);
    for (let i = 0; i < 5; i++) {
      await core.createNamespacedConfigMap({
        namespace: "default",
        body: {
          metadata: { name: `cm-${i}`, labels: { n: String(i), even: String(i % 2 === 0) } },
          data: { i: String(i) },
        },
      });
    }
    const page1 = await core.listNamespacedConfigMap({ namespace: "default", limit: 2 });
    expect(page1.items.map((c) => c.metadata?.name)).toEqual(["cm-0", "cm-1"]);
    const page2 = await core.listNamespacedConfigMap({
      namespace: "default",
      limit: 2,
      _continue: page1.metadata?._continue,
    });
    expect(page2.items.map((c) => c.metadata?.name)).toEqual(["cm-2", "cm-3"]);
    const sel = await core.listNamespacedConfigMap({
      namespace: "default",
      labelSelector: "even=true,n in (0,4)",
    });
    expect(sel.items.map((c) => c.metadata?.name)).toEqual(["cm-0", "cm-4"]);
    const byName = await core.listNamespacedConfigMap({
      namespace: "default",
      fieldSelector: "metadata.name!=cm-0",
      labelSelector: "n",
    });
    expect(byName.items).toHaveLength(4);

    const cm = await core.readNamespacedConfigMap({ name: "cm-0", namespace: "default" });
    await core.replaceNamespacedConfigMap({
      name: "cm-0",
      namespace: "default",
      body: { ...cm, data: { i: "changed" } },
    });
    const stale: V1ConfigMap = { ...cm, data: { i: "stale" } };
    const err = await core
      .replaceNamespacedConfigMap({ name: "cm-0", namespace: "default", body: stale })
      .catch((e: unknown) => e);
    expect((err as { code: number }).code).toBe(409);
    expect(String((err as { body: string }).body)).toContain("the object has been modified");
  });

  it("watches from a resourceVersion, resumes, and gets 410 once compacted", async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const list = await core.listNamespacedConfigMap({ namespace: "default" });
    const rv = list.metadata!.resourceVersion!;
    const events: string[] = [];
    const watch = new Watch(kc);
    const ctl = await watch.watch(
      "/api/v1/namespaces/default/configmaps",
      { resourceVersion: rv, allowWatchBookmarks: true },
      (type, obj: V1ConfigMap) => events.push(`${type} ${obj.metadata?.name ?? ""}`),
      () => undefined,
    );
    await core.createNamespacedConfigMap({ namespace: "default", body: { metadata: { name: "watched" } } });
    await core.deleteNamespacedConfigMap({ name: "watched", namespace: "default" });
    const deadline = Date.now() + 5000;
    while (!events.includes("BOOKMARK ") && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    ctl.abort();
    expect(events.filter((e) => !e.startsWith("BOOKMARK"))).toEqual(["ADDED watched", "DELETED watched"]);
    expect(events).toContain("BOOKMARK ");

    // Resuming from the list's version replays the same history through the typed client.
    const replay: string[] = [];
    const abort = new AbortController();
    for await (const ev of client.watch("configmaps", {
      namespace: "default",
      resourceVersion: rv,
      signal: abort.signal,
    })) {
      replay.push(`${ev.type} ${ev.object.metadata?.name}`);
      if (replay.length === 2) abort.abort();
    }
    expect(replay).toEqual(["ADDED watched", "DELETED watched"]);

    await s.store.compact(await s.store.revision());
    const gone = await (async () => {
      for await (const ev of client.watch("configmaps", {
        namespace: "default",
        resourceVersion: rv,
        timeoutSeconds: 10,
      }))
        void ev;
    })().catch((e: unknown) => e);
    expect(gone).toBeInstanceOf(ApiStatusError);
    expect((gone as ApiStatusError).code).toBe(410);
  });

  it("defaults pods and services, allocates distinct ClusterIPs, binds, and serves the scale subresource", async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const apps = kc.makeApiClient(AppsV1Api);
    const pod: V1Pod = await core.createNamespacedPod({
      namespace: "default",
      body: { metadata: { generateName: "p-" }, spec: { containers: [{ name: "c", image: "busybox" }] } },
    });
    expect(pod.metadata?.name).toMatch(/^p-[a-z0-9]{5}$/);
    expect(pod.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(pod.spec?.restartPolicy).toBe("Always");
    expect(pod.spec?.dnsPolicy).toBe("ClusterFirst");
    expect(pod.spec?.terminationGracePeriodSeconds).toBe(30);
    expect(pod.spec?.containers[0]?.imagePullPolicy).toBe("Always");
    await client.bind("default", pod.metadata!.name!, "node-a");
    await expect(client.bind("default", pod.metadata!.name!, "node-b")).rejects.toMatchObject({ code: 409 });

    const ips = new Set<string>(["10.96.0.1"]);
    for (let i = 0; i < 3; i++) {
      const svc = await core.createNamespacedService({
        namespace: "default",
        body: { metadata: { name: `s${i}` }, spec: { ports: [{ port: 80 }] } },
      });
      expect(svc.spec?.ports?.[0]?.targetPort).toBe(80);
      ips.add(svc.spec!.clusterIP!);
    }
    expect(ips.size).toBe(4);
    const np = await core.createNamespacedService({
      namespace: "default",
      body: { metadata: { name: "np" }, spec: { type: "NodePort", ports: [{ port: 81 }] } },
    });
    const nodePort = np.spec!.ports![0]!.nodePort!;
    expect(nodePort).toBeGreaterThanOrEqual(30000);
    expect(nodePort).toBeLessThanOrEqual(32767);
    expect(await kubectl("get", "svc", "np")).toMatch(
      new RegExp(`np\\s+NodePort\\s+\\S+\\s+<none>\\s+81:${nodePort}/TCP`),
    );
    const taken = await core
      .createNamespacedService({
        namespace: "default",
        body: { metadata: { name: "np2" }, spec: { type: "NodePort", ports: [{ port: 81, nodePort }] } },
      })
      .catch((e: unknown) => e);
    expect((taken as { code: number }).code).toBe(422);

    await apps.createNamespacedDeployment({
      namespace: "default",
      body: JSON.parse(JSON.stringify((await import("yaml")).parse(deployment(1, "nginx")))),
    });
    const scale = await apps.readNamespacedDeploymentScale({ name: "web", namespace: "default" });
    expect(scale.spec?.replicas).toBe(1);
    expect(scale.status?.selector).toBe("app=web");
    await apps.replaceNamespacedDeploymentScale({
      name: "web",
      namespace: "default",
      body: { ...scale, spec: { replicas: 4 } },
    });
    const d = await apps.readNamespacedDeployment({ name: "web", namespace: "default" });
    expect(d.spec?.replicas).toBe(4);
    expect(d.metadata?.generation).toBe(2);
    // Status writes do not bump generation and go only through /status.
    await apps.replaceNamespacedDeploymentStatus({
      name: "web",
      namespace: "default",
      body: { ...d, status: { replicas: 4, readyReplicas: 3 } },
    });
    const d2 = await apps.readNamespacedDeployment({ name: "web", namespace: "default" });
    expect(d2.metadata?.generation).toBe(2);
    expect(d2.status?.readyReplicas).toBe(3);
  });
});

describe("lab-server authentication and authorization", () => {
  function rawGet(
    path: string,
    cert?: { cert: Buffer; key: Buffer },
  ): Promise<{ code: number; body: string }> {
    return readFile(s.pki.caCert).then(
      (ca) =>
        new Promise((resolve, reject) => {
          const req = request({ host: "127.0.0.1", port: s.port, path, ca, ...(cert ?? {}) }, (res) => {
            let body = "";
            res.on("data", (d: Buffer) => (body += d.toString()));
            res.on("end", () => resolve({ code: res.statusCode ?? 0, body }));
          });
          req.on("error", reject);
          req.end();
        }),
    );
  }

  async function fetchWithCert(
    method: string,
    path: string,
    body: string,
  ): Promise<{ code: number; body: string }> {
    const r = await rawRequest(s.port, await identity(s, s.admin), method, path, {
      body,
      headers: { "Content-Type": "application/json" },
    });
    return { code: r.code, body: r.body };
  }

  it("answers 401 with a Status without a client certificate", async () => {
    const res = await rawGet("/api/v1/pods");
    expect(res.code).toBe(401);
    expect(JSON.parse(res.body)).toMatchObject({ kind: "Status", reason: "Unauthorized", code: 401 });
  });

  it("serves health without a certificate", async () => {
    expect(await rawGet("/readyz")).toEqual({ code: 200, body: "ok" });
  });

  it("serves only health on the plain-HTTP health port, and keepalived's rendered check passes on it", async () => {
    const port = await s.server.startHealth("127.0.0.1", 0);
    const get = async (path: string) => {
      const r = await fetch(`http://127.0.0.1:${port}${path}`);
      return { code: r.status, body: await r.text() };
    };
    expect(await get("/readyz")).toEqual({ code: 200, body: "ok" });
    expect((await get("/api/v1/pods")).code).toBe(404);
    const dir = await mkdtemp(join(tmpdir(), "readyz-check-"));
    const check = join(dir, "check-apiserver");
    await writeFile(check, renderReadyzCheck(port), { mode: 0o755 });
    expect((await execa(check, { reject: false })).exitCode).toBe(0);
    // nobody on the port (the lab-server gone): the check fails at once
    const free = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, "127.0.0.1", () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => resolve(p));
      });
    });
    await writeFile(check, renderReadyzCheck(free), { mode: 0o755 });
    expect((await execa(check, { reject: false })).exitCode).not.toBe(0);
    await rm(dir, { recursive: true, force: true });
  });

  it("answers the health check from its own thread while the API's loop is busy, and fails it when the loop is stuck", async () => {
    const port = await s.server.startHealth("127.0.0.1", 0);
    const dir = await mkdtemp(join(tmpdir(), "readyz-busy-"));
    const check = join(dir, "check-apiserver");
    await writeFile(check, renderReadyzCheck(port), { mode: 0o755 });
    // The check starts 0.3 s into a busy spell of the main loop (nothing else runs meanwhile).
    const busy = (ms: number) => {
      const end = Date.now() + ms;
      while (Date.now() < end);
    };
    const during = async (busyMs: number, atMs: number) => {
      const run = execa("bash", ["-c", `sleep ${atMs / 1000}; ${check}; echo "exit=$?"`], { reject: false });
      await new Promise((r) => setTimeout(r, 50)); // the child is running
      busy(busyMs);
      return (await run).stdout;
    };
    // 2 s busy: the thread answers 200 at once.
    expect(await during(2_000, 300)).toBe("exit=0");
    // 10 s stuck: after 5 s without a heartbeat the thread says 503, and the check (at 7 s, so a
    // loaded machine's late bash still lands inside the stuck spell) fails.
    expect(await during(10_000, 7_000)).toBe("exit=1");
    const r = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(r.status).toBe(200); // the loop runs again
    await rm(dir, { recursive: true, force: true });
  });

  it("retries an update without resourceVersion over a concurrent write; a stale resourceVersion is 409", async () => {
    const created = await client.create(
      "configmaps",
      { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "race" }, data: { a: "first" } },
      "default",
    );
    // Another writer lands between lab-server's read and its compare-and-swap, once.
    const store = s.store as unknown as { update: (k: string, v: unknown, rev: number) => Promise<number> };
    const original = store.update.bind(store);
    let raced = false;
    store.update = async (k, v, rev) => {
      if (!raced && k.endsWith("/configmaps/default/race")) {
        raced = true;
        await original(k, { ...(v as object), data: { a: "theirs" } }, rev);
      }
      return original(k, v, rev);
    };
    try {
      const put = (body: object) =>
        fetchWithCert("PUT", "/api/v1/namespaces/default/configmaps/race", JSON.stringify(body));
      const mine = await put({ metadata: { name: "race" }, data: { a: "mine" } });
      expect(raced).toBe(true);
      expect(mine.code).toBe(200);
      expect((await client.get("configmaps", "race", "default")).data).toEqual({ a: "mine" });
      const stale = await put({
        metadata: { name: "race", resourceVersion: created.metadata!.resourceVersion },
        data: { a: "stale" },
      });
      expect(stale.code).toBe(409);
      expect((await client.get("configmaps", "race", "default")).data).toEqual({ a: "mine" });
    } finally {
      store.update = original;
    }
  });

  it("answers 413 for bodies over the body limit and 400 for malformed JSON, storing nothing", async () => {
    const post = (body: string): Promise<{ code: number; body: string }> =>
      fetchWithCert("POST", "/api/v1/namespaces/default/configmaps", body);
    const big = await post(
      JSON.stringify({ metadata: { name: "big" }, data: { a: "x".repeat(3.5 * 1024 * 1024) } }),
    );
    expect(big.code).toBe(413);
    const bad = await post('{"metadata": {"name": "bad"');
    expect(bad.code).toBe(400);
    expect(JSON.parse(bad.body)).toMatchObject({ kind: "Status", reason: "BadRequest" });
    const wrongType = await post(JSON.stringify({ metadata: { name: "wrong" }, data: { a: 1 } }));
    expect(wrongType.code).toBe(422);
    for (const name of ["big", "bad", "wrong"])
      await expect(client.get("configmaps", name, "default")).rejects.toMatchObject({ code: 404 });
  });

  it("lets a node touch its own Node but answers 403 elsewhere", async () => {
    const n = await s.pki.client("node-a", "system:node:node-a", ["system:nodes"]);
    const kubeconfig = join(s.pki.dir, "node.kubeconfig");
    await writeFile(kubeconfig, kubeconfigYaml(s.url, s.pki.caCert, n.cert, n.key, "node-a"));
    const nodeClient = await LabClient.fromKubeconfig(kubeconfig);
    await client.create("nodes", { metadata: { name: "node-a" } }).catch(() => undefined);
    try {
      await nodeClient.patch("nodes", "node-a", { metadata: { labels: { seen: "yes" } } });
      const err = await nodeClient
        .patch("nodes", "node-b", { metadata: { labels: { seen: "yes" } } })
        .catch((e: unknown) => e);
      expect((err as ApiStatusError).code).toBe(403);
      await nodeClient.create("leases", {
        metadata: { name: "node-a", namespace: "kube-node-lease" },
        spec: { holderIdentity: "node-a" },
      });
      const other = await nodeClient
        .create("nodes", { metadata: { name: "node-z" } })
        .catch((e: unknown) => e);
      expect((other as ApiStatusError).code).toBe(403);
      const err2 = await nodeClient
        .create("configmaps", { metadata: { name: "x", namespace: "default" } })
        .catch((e: unknown) => e);
      expect((err2 as ApiStatusError).code).toBe(403);
    } finally {
      nodeClient.close();
    }
  });
});
