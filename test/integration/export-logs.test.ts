/**
 * `lab export logs DIR` on a half-broken lab: state with a plan and recorded machines that do not
 * answer (a closed port on loopback). Every part it can get is written; each node it cannot reach
 * is named with the reason, and the command does not fail.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { LabState } from "../../topology/state.ts";
import type { Machine } from "../../provisioners/provisioner.ts";
import { labPlan } from "../helpers/lab-plan.ts";

const labBin = resolve(import.meta.dirname, "../../bin/lab.js");
let home = "";
const saved = process.env.LAB_HOME;

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), "lab-export-"));
  process.env.LAB_HOME = home;
  const p = labPlan("broken", {
    network: { cidr: "10.249.7.0/24" },
    masters: { count: 1 },
    workers: { count: 1 },
  });
  const state = new LabState("broken");
  await state.writeJson("plan.json", p);
  // Port 1 on loopback: nothing listens, so each connect is refused at once.
  const machines: Machine[] = p.nodes.map((n) => ({
    name: n.name,
    role: n.role,
    address: "127.0.0.1",
    ssh: {
      host: "127.0.0.1",
      port: 1,
      user: "root",
      privateKeyPath: join(home, "nokey"),
      hostKey: "SHA256:none",
    },
  }));
  await state.writeJson("machines.json", machines);
});
afterAll(async () => {
  if (saved === undefined) delete process.env.LAB_HOME;
  else process.env.LAB_HOME = saved;
  await rm(home, { recursive: true, force: true });
});

describe("lab export logs", () => {
  it("writes what it can and names each node it could not reach", async () => {
    const out = join(home, "export");
    const r = await execa(process.execPath, [labBin, "--json", "export", "logs", out, "--lab", "broken"], {
      env: { ...process.env, LAB_HOME: home },
    });
    const report = JSON.parse(r.stdout) as { written: string[]; missing: { part: string; why: string }[] };
    expect(report.written).toEqual(expect.arrayContaining(["plan.json", "status.json"]));
    expect(report.missing.map((m) => m.part)).toEqual(
      expect.arrayContaining(["bootstrap.json", "nodes/master-1", "nodes/worker-1"]),
    );
    expect(JSON.parse(await readFile(join(out, "plan.json"), "utf8"))).toMatchObject({ lab: "broken" });
    expect(await readdir(join(out, "nodes"))).toEqual(["master-1", "worker-1"]);
    expect(await readFile(join(out, "nodes/worker-1/error.txt"), "utf8")).toMatch(/^worker-1: \S+/);
    expect(await readFile(join(out, "MISSING.txt"), "utf8")).toContain("nodes/master-1");
  }, 60_000);
});
