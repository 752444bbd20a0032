import { mkdtemp, readFile, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { LabError } from "../../topology/errors.ts";
import { LabState, labHome } from "../../topology/state.ts";
import { lockingProcess } from "../helpers/cli.ts";

let home: string;
beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), "lab-state-"));
  return () => rm(home, { recursive: true, force: true });
});

describe("lab state directory", () => {
  it("lives under $LAB_HOME, else the XDG state directory", () => {
    expect(labHome({ LAB_HOME: "/x" })).toBe("/x");
    expect(labHome({ XDG_STATE_HOME: "/s" })).toBe("/s/lab");
  });

  it("writes files atomically and secrets with mode 0600", async () => {
    const s = new LabState("a", home);
    await s.writeJson("state.json", { step: 1 });
    await s.writeJson("state.json", { step: 2 });
    await s.writeSecret("pki/ca.key", "secret");
    expect(await s.readJson("state.json")).toEqual({ step: 2 });
    expect((await stat(s.path("pki/ca.key"))).mode & 0o777).toBe(0o600);
    expect((await readdir(s.dir)).filter((f) => f.includes(".tmp-"))).toEqual([]);
    expect(await readFile(s.path("pki/ca.key"), "utf8")).toBe("secret");
  });

  it("a lock held by another live process refuses a second mutating command and names the holder", async () => {
    // A real second process takes the lock and keeps it until we tell it to exit.
    const holder = lockingProcess("b", home, "lab up", "hold");
    await new Promise<void>((resolve) => holder.stdout!.once("data", () => resolve()));
    const mine = new LabState("b", home);
    const err = await mine.lock("lab down").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LabError);
    expect((err as LabError).code).toBe("LAB_LOCKED");
    expect((err as LabError).message).toMatch(new RegExp(`locked by \`lab up\` \\(pid ${holder.pid} `));
    holder.stdin!.write("x");
    await holder;
    // The holder exited normally and released the lock: now it is ours.
    await mine.lock("lab down");
    mine.unlockSync();
  });

  it("takes over a lock left behind by a process that died", async () => {
    const dead = await lockingProcess("c", home, "lab up", "die");
    expect(dead.signal).toBe("SIGKILL");
    const s = new LabState("c", home);
    await expect(s.lock("lab up")).resolves.toBeUndefined();
    s.unlockSync();
  });
});
