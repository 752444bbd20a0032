import { describe, expect, it } from "vitest";
import {
  ETCD_UNITS,
  MASTER_UNITS,
  podsStillRunning,
  POD_GRACE_SECONDS,
  stopPlan,
  stopUnitsScript,
  unitsStillUp,
  WORKER_UNITS,
} from "../../../bootstrap/stop.ts";
import { labPlan } from "../../helpers/lab-plan.ts";

const steps = (actions: ReturnType<typeof stopPlan>) =>
  actions.map(
    (a) => `${a.step} ${a.nodes.join(",")}${a.kind === "services" ? ` [${a.units.join(" ")}]` : ""}`,
  );

describe("stopPlan", () => {
  it("stops and powers off the workers, then the masters' agent, VIP and API server, etcd last, then the masters", () => {
    expect(steps(stopPlan(labPlan("s"), { powerOff: true }))).toEqual([
      `stop.workers worker-1,worker-2 [${WORKER_UNITS.join(" ")}]`,
      "stop.power-off worker-1,worker-2",
      `stop.masters master-1,master-2,master-3 [${MASTER_UNITS.join(" ")}]`,
      "stop.etcd master-1,master-2,master-3 [lab-etcd.service]",
      "stop.power-off master-1,master-2,master-3",
    ]);
  });

  it("on the masters, the agent goes before keepalived and keepalived before lab-server", () => {
    const i = (u: string) => MASTER_UNITS.indexOf(u);
    expect(i("lab-agent.service")).toBeLessThan(i("lab-keepalived.service"));
    expect(i("lab-keepalived.service")).toBeLessThan(i("lab-server.service"));
    expect(MASTER_UNITS).not.toContain("lab-etcd.service");
    expect(ETCD_UNITS).toEqual(["lab-etcd.service"]);
  });

  it("before a power-off, the agents' nodes also stop their pods' containers; etcd's step does not", () => {
    const pods = stopPlan(labPlan("s"), { powerOff: true }).map(
      (a) => a.kind === "services" && a.pods === true,
    );
    expect(pods).toEqual([true, false, true, false, false]);
  });

  it("without a clean power-off (bare metal) it stops the services only, in the same order, pods left running", () => {
    const actions = stopPlan(labPlan("s"), { powerOff: false });
    expect(actions.map((a) => a.kind)).toEqual(["services", "services", "services"]);
    expect(actions.map((a) => a.step)).toEqual(["stop.workers", "stop.masters", "stop.etcd"]);
    expect(actions.some((a) => a.kind === "services" && a.pods)).toBe(false);
  });

  it("a lab without workers starts with the masters", () => {
    const p = labPlan("s", { masters: { count: 1 }, workers: { count: 0 } });
    expect(steps(stopPlan(p, { powerOff: true }))).toEqual([
      `stop.masters master-1 [${MASTER_UNITS.join(" ")}]`,
      "stop.etcd master-1 [lab-etcd.service]",
      "stop.power-off master-1",
    ]);
  });
});

describe("stopUnitsScript and unitsStillUp", () => {
  const units = ["lab-agent.service", "lab-server.service"];

  it("stops the units one after the other, then asks each one's state", () => {
    const s = stopUnitsScript(units);
    expect(s).toContain(`for u in 'lab-agent.service' 'lab-server.service'; do systemctl stop "$u"`);
    expect(s.indexOf("systemctl stop")).toBeLessThan(s.indexOf("systemctl is-active"));
  });

  it("with pods, SIGTERMs the pods' containers after the units, then SIGKILLs what is left after the grace", () => {
    const s = stopUnitsScript(units, { pods: true });
    expect(s).not.toBe(stopUnitsScript(units));
    const term = s.indexOf("tasks kill -s SIGTERM");
    const kill = s.indexOf("tasks kill -a -s SIGKILL");
    expect(s.indexOf("systemctl stop")).toBeLessThan(term);
    expect(term).toBeGreaterThan(0);
    expect(s.indexOf(`settle ${POD_GRACE_SECONDS}`)).toBeLessThan(kill);
    expect(term).toBeLessThan(kill);
    expect(stopUnitsScript(units)).not.toContain("ctr");
  });

  it("counts the pod containers still running", () => {
    expect(podsStillRunning("lab-agent.service inactive\npods 0\n")).toBe(0);
    expect(podsStillRunning("pods 3\nlab-agent.service inactive")).toBe(3);
    expect(podsStillRunning("lab-agent.service inactive")).toBe(0);
  });

  it("names the units that are still up; missing or failed units count as stopped", () => {
    expect(unitsStillUp(units, "lab-agent.service inactive\nlab-server.service failed\n")).toEqual([]);
    expect(unitsStillUp(units, "lab-agent.service inactive\nlab-server.service deactivating\n")).toEqual([
      "lab-server.service",
    ]);
    expect(unitsStillUp(units, "lab-agent.service active\nlab-server.service inactive")).toEqual([
      "lab-agent.service",
    ]);
    // No answer (the command was cut short): nothing says they stopped.
    expect(unitsStillUp(units, "")).toEqual(units);
  });
});
