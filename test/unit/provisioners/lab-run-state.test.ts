import { describe, expect, it } from "vitest";
import { labRunState, type MachineState } from "../../../provisioners/provisioner.ts";

const ms = (...states: MachineState[]) => states.map((state, i) => ({ name: `n${i}`, state }));

describe("labRunState", () => {
  it("is stopped when every machine exists and none runs, running when all run", () => {
    expect(labRunState(ms("stopped", "stopped", "stopped"))).toBe("stopped");
    expect(labRunState(ms("running", "running"))).toBe("running");
  });

  it("is partial when some run and some do not, or a state is unknown", () => {
    expect(labRunState(ms("running", "stopped"))).toBe("partial");
    expect(labRunState(ms("stopped", "missing"))).toBe("partial");
    expect(labRunState(ms("running", "unknown"))).toBe("partial");
  });

  it("is missing without machines", () => {
    expect(labRunState([])).toBe("missing");
    expect(labRunState(ms("missing", "missing"))).toBe("missing");
  });

  it("is stopped on hosts that keep running when lab stop stopped their services (bare metal)", () => {
    expect(labRunState(ms("running", "running"), true)).toBe("stopped");
  });
});
