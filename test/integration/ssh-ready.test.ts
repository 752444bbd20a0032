/** The ssh-ready readiness check, when nothing answers: it names itself, the node, and where to look. */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { generateEd25519 } from "../../provisioners/keys.ts";
import { waitSshReady } from "../../ssh/ready.ts";

let dir = "";
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  return await new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

describe("ssh-ready", () => {
  it("on timeout says which check, which node, the last error, the console tail and its path", async () => {
    dir = await mkdtemp(join(tmpdir(), "lab-ssh-ready-"));
    const key = await generateEd25519("test");
    await writeFile(join(dir, "id"), key.privateKey, { mode: 0o600 });
    const port = await freePort(); // nothing listens there
    const err = await waitSshReady(
      {
        node: "worker-7",
        host: "127.0.0.1",
        port,
        user: "lab",
        privateKeyPath: join(dir, "id"),
        hostKey: key.publicKey,
      },
      {
        timeoutMs: 1500,
        intervalMs: 200,
        hints: {
          consoleLog: "/x/vms/worker-7/console.log",
          consoleTail: async () => "[  OK  ] Reached target Basic System.",
        },
      },
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "NOT_READY_SSH", where: "console log /x/vms/worker-7/console.log" });
    const what = (err as { what: string }).what;
    expect(what).toMatch(/readiness check ssh-ready failed for node worker-7/);
    expect(what).toMatch(/ECONNREFUSED/);
    expect(what).toContain("| [  OK  ] Reached target Basic System.");
    expect((err as { fix: string }).fix).toMatch(/lab logs worker-7 --console/);
  });
});
