/**
 * `kubectl logs` and `kubectl exec` end to end: stock kubectl → lab-server (pods/log, pods/exec)
 * → lab-agent's HTTPS port (node/main.ts as a child process) → containerd in its own network
 * namespace. Also: the agent's port refuses every client but lab-server's kubelet-client identity.
 */
import type { V1Pod } from "@kubernetes/client-node";
import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KUBELET_CLIENT_CN, KUBELET_CLIENT_GROUP } from "../../node/server/server.ts";
import { makeTestPki, type TestPki } from "../helpers/test-pki.ts";
import { startAgentLab, type AgentLab } from "./agent-lab.ts";

const NODE = "worker-logs";

let lab: AgentLab;
let otherCa: TestPki;

const kubectl = (args: string[], input?: string): ReturnType<AgentLab["kubectl"]> => lab.kubectl(args, input);
const ok = (...args: string[]): Promise<string> => lab.ok(...args);
const until = <T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> =>
  lab.until(what, fn, timeoutMs);

const pod = async (name: string): Promise<V1Pod> =>
  JSON.parse(await ok("get", "pod", name, "-o", "json")) as V1Pod;

/** GET on the agent's port with the given client certificate: the status code, or the TLS error. */
function agentGet(cert?: { cert: string; key: string }): Promise<number | string> {
  return new Promise((resolve) => {
    void (async () => {
      const req = request(
        {
          host: "127.0.0.1",
          port: lab.agentPort,
          path: `/containerLogs/default/ticker/main`,
          ca: await readFile(lab.api.pki.caCert),
          ...(cert ? { cert: await readFile(cert.cert), key: await readFile(cert.key) } : {}),
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on("error", (err) => resolve(`refused: ${err.message}`));
      req.end();
    })();
  });
}

beforeAll(async () => {
  [lab, otherCa] = await Promise.all([startAgentLab(NODE), makeTestPki()]);
  // One container `main` of the sample image running `script`.
  const samplePod = (name: string, script: string): string => `
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: default}
spec:
  nodeName: ${NODE}
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: docker.io/lab/sample:latest
    imagePullPolicy: Never
    command: ["sh", "-c", ${JSON.stringify(script)}]
`;
  const manifest = [
    samplePod("ticker", "i=0; while true; do echo line-$i; i=$((i+1)); sleep 1; done"),
    samplePod("crasher", "echo run-$(cat /proc/sys/kernel/random/uuid); sleep 1; exit 1"),
  ].join("---");
  await writeFile(join(lab.dir, "pods.yaml"), manifest);
  await ok("apply", "-f", join(lab.dir, "pods.yaml"));
  await until("ticker Running", async () => (await pod("ticker")).status?.phase === "Running", 60_000);
}, 120_000);

afterAll(async () => {
  await lab?.stop();
  await otherCa?.cleanup();
}, 60_000);

describe("kubectl logs and exec through lab-server to lab-agent", () => {
  it("kubectl logs shows the container's lines; --tail and --timestamps shape them", async () => {
    await until("three lines logged", async () => (await ok("logs", "ticker")).includes("line-2"));
    const all = await ok("logs", "ticker");
    expect(all).toMatch(/^line-0\nline-1\nline-2\n/);
    const tail = await ok("logs", "ticker", "--tail=2");
    // the last two lines at the time of asking: consecutive, and none older than `all`'s last
    // (the ticker may have written more since: comparing with `all`'s end made this test flaky)
    const n = tail
      .trim()
      .split("\n")
      .map((l) => Number(/^line-(\d+)$/.exec(l)?.[1]));
    expect(n).toHaveLength(2);
    expect(n[1]).toBe(n[0]! + 1);
    const lastOfAll = Number(/line-(\d+)\n$/.exec(all)?.[1]);
    expect(n[1]).toBeGreaterThanOrEqual(lastOfAll);
    const stamped = await ok("logs", "ticker", "--tail=1", "--timestamps");
    expect(stamped).toMatch(/^\d{4}-\d\d-\d\dT\S+ line-\d+\n$/);
  }, 30_000);

  it("kubectl logs -f streams lines written after it started", async () => {
    const before = (await ok("logs", "ticker")).trim().split("\n").length;
    const f = spawn("/usr/bin/kubectl", ["logs", "-f", "ticker", "--tail=1"], {
      env: { ...process.env, KUBECONFIG: lab.kubeconfig },
    });
    let out = "";
    f.stdout.on("data", (d: Buffer) => (out += d.toString()));
    try {
      // line numbers start at 0: line-(before+1) did not exist when -f started
      await until("a new line through -f", async () => out.includes(`line-${before + 1}\n`), 15_000);
    } finally {
      f.kill("SIGKILL");
    }
  }, 30_000);

  it("kubectl logs --previous shows the run before a restart", async () => {
    const p = await until(
      "crasher restarted and logged again",
      async () => {
        const p = await pod("crasher");
        return (p.status?.containerStatuses?.[0]?.restartCount ?? 0) >= 1 && p;
      },
      40_000,
    );
    expect(p.status?.containerStatuses?.[0]?.restartCount).toBeGreaterThanOrEqual(1);
    const current = await until("current run logged", async () => {
      const s = await ok("logs", "crasher");
      return /run-\S+/.test(s) && s;
    });
    const previous = await ok("logs", "crasher", "--previous");
    expect(previous).toMatch(/^run-[0-9a-f-]+\n$/);
    expect(current).toMatch(/^run-[0-9a-f-]+\n$/);
    expect(previous).not.toBe(current);
    const none = await kubectl(["logs", "ticker", "--previous"]);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/previous terminated container "main" in pod "ticker" not found/);
  }, 60_000);

  it("kubectl exec returns the command's exit code and output, over WebSocket v5", async () => {
    const r = await kubectl(["exec", "ticker", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe("out\n");
    expect(r.stderr).toContain("err\n");
    expect((await kubectl(["exec", "ticker", "--", "true"])).code).toBe(0);
    expect(lab.agentLog()).toContain("exec (v5.channel.k8s.io)");
  }, 30_000);

  it("kubectl exec -i passes stdin through and ends it", async () => {
    const r = await kubectl(["exec", "-i", "ticker", "--", "sh", "-c", "cat; echo done"], "hi\nthere\n");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("hi\nthere\ndone\n");
  }, 30_000);

  it("answers with a clear Status for a wrong container and a missing pod", async () => {
    const wrong = await kubectl(["exec", "ticker", "-c", "nope", "--", "true"]);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/container nope is not valid for pod ticker/);
    const missing = await kubectl(["logs", "no-such-pod"]);
    expect(missing.stderr).toMatch(/pods "no-such-pod" not found/);
  }, 30_000);

  it("the agent's port refuses any client but lab-server's kubelet-client identity", async () => {
    const foreign = await otherCa.client("intruder", KUBELET_CLIENT_CN, [KUBELET_CLIENT_GROUP]);
    expect(await agentGet(foreign)).toMatch(/^refused/);
    expect(await agentGet()).toMatch(/^refused/);
    expect(await agentGet(lab.nodeCert)).toBe(403);
    expect(await agentGet(lab.api.admin)).toBe(403);
  }, 30_000);
});
