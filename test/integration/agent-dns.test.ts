/**
 * Cluster DNS end to end: lab-server (which creates kube-system/kube-dns), a real containerd in
 * its own network namespace, and node/main.ts with --cluster-dns. Pods running the sample image
 * (busybox) resolve Services by short name, `NAME.NAMESPACE` and FQDN through the resolv.conf the
 * agent gives them and the DNAT of 10.96.0.10:53 to the agent's listener; a missing name is
 * NXDOMAIN; a Service created later answers within a second; requests by name over 3 pods spread
 * evenly.
 */
import type { V1Pod } from "@kubernetes/client-node";
import { execFile, type ChildProcess } from "node:child_process";
import { createSocket } from "node:dgram";
import { randomInt } from "node:crypto";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLASS_IN, decodeMessage, encodeMessage, RCODE, RR, type Message } from "../../node/dns/wire.ts";
import { startTestApiServer, type TestApiServer } from "../helpers/test-apiserver.ts";
import { applyYaml, kubectlFor } from "../helpers/kubectl.ts";
import { until as waitFor } from "../helpers/until.ts";
import { agentLogTail, startTestNode, type TestNode } from "./agent-node.ts";
import { killAgent, nodeAgentFlags, spawnAgent, writeNodeKubeconfig } from "./agent-process.ts";

const run = promisify(execFile);
const NODE = "dns-node";
const CLUSTER_DNS = "10.96.0.10";

let api: TestApiServer;
let node: TestNode;
let agent: ChildProcess | undefined;
let agentLog = "";
let dir: string;
/** Where the agent's DNS listens (the host end of the node's veth: the agent runs in the host netns). */
let listen: { address: string; port: number };

const kubectl = kubectlFor(() => api.kubeconfig);

const apply = (yaml: string): Promise<void> => applyYaml(kubectl, dir, yaml);

const until = <T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> =>
  waitFor(what, fn, timeoutMs, { everyMs: 100, context: () => agentLogTail(agentLog) });

const getPod = async (name: string): Promise<V1Pod> =>
  JSON.parse(await kubectl("get", "pod", name, "-o", "json")) as V1Pod;

const samplePod = (name: string): string => `
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: default, labels: {app: sample}}
spec:
  nodeName: ${NODE}
  terminationGracePeriodSeconds: 0
  containers:
  - {name: web, image: docker.io/lab/sample:latest, imagePullPolicy: Never}
`;

/** Runs a shell script in a one-shot pod of the sample image; resolves to its output. */
async function inPod(name: string, script: string, timeoutMs = 60_000): Promise<string> {
  await apply(`
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: default}
spec:
  nodeName: ${NODE}
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: docker.io/lab/sample:latest
    imagePullPolicy: Never
    command: ["sh", "-c", ${JSON.stringify(script)}]
`);
  const pod = await until(
    `pod ${name} finished`,
    async () => {
      const p = await getPod(name);
      return (p.status?.phase === "Succeeded" || p.status?.phase === "Failed") && p;
    },
    timeoutMs,
  );
  const podDir = (await readdir(node.logRoot)).find((d) =>
    d.startsWith(`default_${name}_${pod.metadata!.uid}`),
  );
  const log = await readFile(join(node.logRoot, podDir!, "c", "0.log"), "utf8");
  // CRI log lines: <time> <stream> <P|F> <text>
  return log
    .split("\n")
    .filter(Boolean)
    .map((l) => l.split(" ").slice(3).join(" "))
    .join("\n");
}

function question(name: string, type: number): Message {
  return {
    id: randomInt(65536),
    flags: { qr: false, opcode: 0, aa: false, tc: false, rd: true, ra: false, rcode: 0 },
    questions: [{ name, type, class: CLASS_IN }],
    answers: [],
    authorities: [],
    additionals: [],
  };
}

/** One UDP query straight to the agent's listener. */
function queryUdp(name: string, type: number = RR.A): Promise<Message> {
  return new Promise((resolve, reject) => {
    const s = createSocket("udp4");
    const t = setTimeout(() => {
      s.close();
      reject(new Error("no answer"));
    }, 1000);
    s.on("message", (m) => {
      clearTimeout(t);
      s.close();
      resolve(decodeMessage(m));
    });
    s.send(encodeMessage(question(name, type)), listen.port, listen.address);
  });
}

function queryTcp(name: string, type: number = RR.A): Promise<Message> {
  return new Promise((resolve, reject) => {
    const q = encodeMessage(question(name, type));
    const sock = connect(listen.port, listen.address, () => {
      const framed = Buffer.alloc(q.length + 2);
      framed.writeUInt16BE(q.length, 0);
      framed.set(q, 2);
      sock.write(framed);
    });
    let buf = Buffer.alloc(0);
    sock.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        sock.destroy();
        resolve(decodeMessage(buf.subarray(2, 2 + buf.readUInt16BE(0))));
      }
    });
    sock.on("error", reject);
    sock.setTimeout(2000, () => sock.destroy(new Error("timeout")));
  });
}

const addresses = (m: Message): string[] =>
  m.answers.flatMap((r) => (r.data.type === RR.A && "address" in r.data ? [r.data.address] : []));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lab-agent-dns-"));
  [api, node] = await Promise.all([startTestApiServer(), startTestNode()]);
  const kubeconfig = join(dir, "kubeconfig");
  await writeNodeKubeconfig(api, kubeconfig, NODE);
  const addr = async (dev: string, ns: string[] = []): Promise<string> =>
    (
      await run(ns[0] ?? "ip", [
        ...ns.slice(1),
        ...(ns.length ? ["ip"] : []),
        "-4",
        "-o",
        "addr",
        "show",
        "dev",
        dev,
      ])
    ).stdout.match(/inet (\S+)\//)![1]!;
  const nodeIP = await addr("eth0", ["nsenter", `--net=/run/netns/${node.netns}`]);
  listen = {
    address: await addr(`lab${node.netns.replace("lab-agent-", "")}h`),
    port: randomInt(20000, 30000),
  };
  agent = spawnAgent(
    [
      ...nodeAgentFlags(node, {
        kubeconfig: kubeconfig,
        nodeName: NODE,
        nodeIP: nodeIP,
        stateDir: join(dir, "state"),
      }),
      `--cluster-dns=${CLUSTER_DNS}`,
      `--dns-listen=${listen.address}:${listen.port}`,
      // labs are offline: no upstream, names outside the cluster are REFUSED
      "--resolv-conf=",
    ],
    (text) => (agentLog += text),
  );
  await until("cluster DNS listening", async () => agentLog.includes("cluster DNS"), 30_000);

  for (const i of [1, 2, 3]) await apply(samplePod(`sample-${i}`));
  await apply(`
apiVersion: v1
kind: Service
metadata: {name: sample, namespace: default}
spec:
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
`);
  const ips = await until(
    "3 sample pods running",
    async () => {
      const pods = await Promise.all([1, 2, 3].map((i) => getPod(`sample-${i}`)));
      const ready = pods.filter((p) => p.status?.phase === "Running" && p.status.podIP);
      return ready.length === 3 && ready.map((p) => p.status!.podIP!);
    },
    90_000,
  );
  // a selector-less Service with hand-written Endpoints: no endpoints controller runs here
  await apply(`
apiVersion: v1
kind: Endpoints
metadata: {name: sample, namespace: default}
subsets:
- addresses: [${ips.map((ip) => `{ip: ${ip}}`).join(", ")}]
  ports: [{name: http, port: 8080, protocol: TCP}]
`);
}, 150_000);

afterAll(async () => {
  await killAgent(agent);
  await node?.destroy();
  await api?.stop();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("cluster DNS (lab-agent, real containerd)", () => {
  it("lab-server shows the cluster DNS Service kube-system/kube-dns on the tenth service IP", async () => {
    const table = await kubectl("get", "svc", "-n", "kube-system");
    expect(table).toMatch(/kube-dns\s+ClusterIP\s+10\.96\.0\.10\s+<none>\s+53\/UDP,53\/TCP/);
  });

  it("answers over UDP and TCP: A for a Service, NXDOMAIN + SOA for a missing one, REFUSED outside", async () => {
    const clusterIP = (await kubectl("get", "svc", "sample", "-o", "jsonpath={.spec.clusterIP}")).trim();
    const a = await until("sample in the zone", async () => {
      const m = await queryUdp("sample.default.svc.cluster.local");
      return m.answers.length > 0 && m;
    });
    expect(a.flags).toMatchObject({ qr: true, aa: true, rcode: RCODE.NOERROR });
    expect(addresses(a)).toEqual([clusterIP]);
    expect(addresses(await queryTcp("sample.default.svc.cluster.local"))).toEqual([clusterIP]);
    const missing = await queryUdp("missing.default.svc.cluster.local");
    expect(missing.flags.rcode).toBe(RCODE.NXDOMAIN);
    expect(missing.authorities.map((r) => r.data.type)).toEqual([RR.SOA]);
    const aaaa = await queryTcp("sample.default.svc.cluster.local", RR.AAAA);
    expect([aaaa.flags.rcode, aaaa.answers]).toEqual([RCODE.NOERROR, []]);
    expect((await queryUdp("example.com")).flags.rcode).toBe(RCODE.REFUSED);
  });

  it("lets a pod reach a Service by short name, NAME.NAMESPACE and FQDN; NXDOMAIN for a missing one", async () => {
    const out = await inPod(
      "client",
      [
        "cat /etc/resolv.conf",
        "echo '== nslookup'; nslookup sample.default.svc.cluster.local.",
        "echo '== short'; wget -qO- http://sample",
        "echo '== ns'; wget -qO- http://sample.default",
        "echo '== fqdn'; wget -qO- http://sample.default.svc.cluster.local",
        "echo '== missing'; nslookup missing.default.svc.cluster.local.; echo rc=$?",
        "echo '== wget-missing'; wget -qO- http://missing 2>&1; echo rc=$?",
      ].join("; "),
    );
    const clusterIP = (await kubectl("get", "svc", "sample", "-o", "jsonpath={.spec.clusterIP}")).trim();
    expect(out).toContain(`nameserver ${CLUSTER_DNS}`);
    expect(out).toContain("search default.svc.cluster.local svc.cluster.local cluster.local");
    const section = (s: string): string => out.split(`== ${s}\n`)[1]!.split("\n== ")[0]!;
    expect(section("nslookup")).toContain(`Address: ${clusterIP}`);
    for (const s of ["short", "ns", "fqdn"]) expect(section(s)).toMatch(/^sample-[123]$/m);
    expect(section("missing")).toMatch(/NXDOMAIN/);
    expect(section("missing")).toContain("rc=1");
    expect(section("wget-missing")).toMatch(/bad address 'missing'/);
  }, 90_000);

  it("answers for a Service created later within a second", async () => {
    const created = Date.now();
    await kubectl("create", "service", "clusterip", "later", "--tcp=80:8080");
    const m = await until(
      "later resolves",
      async () => {
        const r = await queryUdp("later.default.svc.cluster.local");
        return r.answers.length > 0 && r;
      },
      5_000,
    );
    const elapsed = Date.now() - created;
    console.log(`Service created → resolvable from the node's DNS: ${elapsed} ms (includes kubectl start)`);
    expect(elapsed).toBeLessThan(1500);
    expect(addresses(m)).toEqual([
      (await kubectl("get", "svc", "later", "-o", "jsonpath={.spec.clusterIP}")).trim(),
    ]);
  });

  it("spreads requests by name over the 3 pods behind the Service within ±20% of even", async () => {
    // 900 requests: with numgen random, ±20% of even holds at >4 sigma (300 would flake ~4% of runs)
    const out = await inPod("spread", "for i in $(seq 900); do wget -qO- http://sample; done", 120_000);
    const tally: Record<string, number> = {};
    for (const l of out.split("\n").filter(Boolean)) tally[l] = (tally[l] ?? 0) + 1;
    console.log(`900 requests to http://sample: ${JSON.stringify(tally)}`);
    expect(Object.keys(tally).sort()).toEqual(["sample-1", "sample-2", "sample-3"]);
    for (const n of Object.values(tally)) {
      expect(n).toBeGreaterThanOrEqual(240);
      expect(n).toBeLessThanOrEqual(360);
    }
  }, 150_000);
});
