import { beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BOOTSTRAP_STEPS, bootstrapCluster, type BootstrapRecord } from "../../../bootstrap/index.ts";
import type { Machine } from "../../../provisioners/provisioner.ts";
import { RecordingReporter } from "../../../topology/progress.ts";
import { LabState } from "../../../topology/state.ts";
import { labPlan } from "../../helpers/lab-plan.ts";

const p = labPlan("run", { network: { cidr: "10.250.0.0/24" } });
const machines: Machine[] = p.nodes.map((n) => ({
  name: n.name,
  role: n.role,
  address: n.address,
  ssh: { host: n.address, port: 22, user: "lab", privateKeyPath: "/nonexistent", hostKey: "SHA256:x" },
}));
let home: string;
beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), "lab-run-"));
  return () => rm(home, { recursive: true, force: true });
});

describe("bootstrapCluster", () => {
  it("reports each step, records it in the state, and says so when a rerun changes nothing", async () => {
    const state = new LabState("run", home);
    await state.ensure();
    const steps = BOOTSTRAP_STEPS.filter((s) => s.id === "pki");
    const first = new RecordingReporter();
    expect(await bootstrapCluster({ plan: p, state, machines, reporter: first }, steps)).toEqual({
      changed: true,
    });
    expect(first.events.map((e) => `${e.step}:${e.state}`)).toEqual([
      "bootstrap.pki:start",
      "bootstrap.pki:done",
    ]);
    expect(first.events[0]!.message).toBe("1/1 certificates (lab CA, etcd CA, servers, clients)");
    expect(await state.readJson("endpoint.json")).toEqual({ server: "https://10.250.0.10:6443", lab: "run" });

    const second = new RecordingReporter();
    expect(await bootstrapCluster({ plan: p, state, machines, reporter: second }, steps)).toEqual({
      changed: false,
    });
    expect(second.events.at(-1)).toMatchObject({ step: "bootstrap.pki", state: "skipped" });
    expect(second.events.at(-1)!.message).toMatch(/^unchanged: all \d+ certificates reused$/);
    expect(second.notices).toEqual(["the cluster already matched the topology: nothing changed"]);
    const rec = await state.readJson<BootstrapRecord>("bootstrap.json");
    expect(rec?.steps.pki?.changed).toBe(false);
  });

  it("shows a step that only verifies as done with its finding, not as unchanged", async () => {
    const state = new LabState("run3", home);
    await state.ensure();
    const pki = BOOTSTRAP_STEPS.filter((s) => s.id === "pki");
    await bootstrapCluster({ plan: p, state, machines, reporter: new RecordingReporter() }, pki);
    const check = {
      id: "wait-ready",
      title: "every node Ready",
      run: () => Promise.resolve({ changed: false, checkOnly: true, message: "5 nodes Ready" }),
    };
    const rerun = new RecordingReporter();
    const out = await bootstrapCluster({ plan: p, state, machines, reporter: rerun }, [...pki, check]);
    expect(out).toEqual({ changed: false });
    expect(rerun.events.at(-1)).toMatchObject({
      step: "bootstrap.wait-ready",
      state: "done",
      message: "5 nodes Ready",
    });
    expect(rerun.notices).toEqual(["the cluster already matched the topology: nothing changed"]);
  });

  it("refuses to start without a machine for every planned node", async () => {
    const state = new LabState("run2", home);
    await expect(
      bootstrapCluster({ plan: p, state, machines: machines.slice(1), reporter: new RecordingReporter() }),
    ).rejects.toThrow(/no machine for master-1/);
  });
});
