/**
 * The streaming half of checks/14-kubectl-parity on a real lab (one master, one worker as nspawn
 * machines, the real `lab up`): kubectl 1.32's port-forward, exec with stdin, exec's exit code,
 * cp both ways, attach and exec -it, through lab-server, the node's lab-agent and its containerd.
 * Run: npx vitest run --project e2e test/e2e/nspawn-streaming.test.ts
 */
import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { get } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2eLab, nspawnTopology, until } from "./helpers.ts";

const TOPOLOGY = nspawnTopology(1, 1);

let l: E2eLab;

function httpStatus(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = get({ host: "127.0.0.1", port, path: "/", timeout: 10_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("timeout", () => req.destroy(new Error("no HTTP answer within 10 s")));
    req.on("error", reject);
  });
}

describe("kubectl streaming on an nspawn lab", () => {
  beforeAll(async () => {
    l = await E2eLab.create("nsstream", TOPOLOGY);
    const up = await l.lab(["up", "--wait", "10m"], { reject: false });
    if (up.exitCode !== 0) throw new Error(`lab up failed (exit ${up.exitCode}): ${up.stderr}`);
    await l.lab(["kubeconfig", l.name, "-o", l.kubeconfig]);
    await l.kubectl(["run", "p", "--image=lab/sample:latest", "--port=8080"]);
    await l.kubectl(["wait", "--for=condition=Ready", "pod/p", "--timeout=300s"], { timeoutMs: 320_000 });
  }, 900_000);

  afterAll(async () => {
    await l?.remove();
  }, 300_000);

  it("port-forward pod/p LOCAL:8080 answers HTTP 200", async () => {
    const pf = spawn("kubectl", ["--kubeconfig", l.kubeconfig, "port-forward", "pod/p", ":8080"]);
    let out = "";
    pf.stdout.on("data", (d: Buffer) => (out += d.toString()));
    pf.stderr.on("data", (d: Buffer) => (out += d.toString()));
    try {
      const port = await until(
        "kubectl port-forward listening",
        60_000,
        async () => {
          const m = /Forwarding from 127\.0\.0\.1:(\d+) ->/.exec(out);
          return m ? Number(m[1]) : undefined;
        },
        500,
      );
      expect(await httpStatus(port)).toBe(200);
    } finally {
      pf.kill("SIGKILL");
    }
  }, 120_000);

  it("exec -i passes stdin and its end; exec exits with the command's code", async () => {
    const cat = await l.kubectl(["exec", "-i", "p", "--", "cat"], { input: "stdin-ok\n", timeoutMs: 60_000 });
    expect(cat.stdout).toBe("stdin-ok");
    const three = await l.kubectl(["exec", "p", "--", "sh", "-c", "exit 3"], {
      reject: false,
      timeoutMs: 60_000,
    });
    expect(three.exitCode).toBe(3);
  }, 150_000);

  it("cp into the pod and back", async () => {
    const f = join(l.dir, "f");
    const g = join(l.dir, "g");
    await writeFile(f, "cp-ok\n");
    await l.kubectl(["cp", f, "p:/tmp/f"], { timeoutMs: 90_000 });
    await l.kubectl(["cp", "p:/tmp/f", g], { timeoutMs: 90_000 });
    expect(await readFile(g, "utf8")).toBe("cp-ok\n");
  }, 200_000);

  it("attach streams what the container writes", async () => {
    await l.kubectl([
      "run",
      "att",
      "--image=lab/sample:latest",
      "--restart=Never",
      "--command",
      "--",
      "sh",
      "-c",
      "i=0; while [ $i -lt 300 ]; do echo attached-$i; i=$((i+1)); sleep 1; done",
    ]);
    await l.kubectl(["wait", "--for=condition=Ready", "pod/att", "--timeout=300s"], { timeoutMs: 320_000 });
    const a = spawn("kubectl", ["--kubeconfig", l.kubeconfig, "attach", "att"]);
    let out = "";
    a.stdout.on("data", (d: Buffer) => (out += d.toString()));
    try {
      await until(
        "two lines through attach",
        60_000,
        async () => ((out.match(/attached-\d+\n/g) ?? []).length >= 2 ? true : undefined),
        500,
      );
    } finally {
      a.kill("SIGKILL");
    }
  }, 400_000);
});
