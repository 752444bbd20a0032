/**
 * The bare-metal precheck against real sshd test hosts (network namespaces). These hosts run no
 * systemd (this machine has none as PID 1), so the check must refuse them; one login has no sudo, a
 * third "host" refuses connections, and the memory floor is set above what any host has. Every
 * problem must come back in one error, and nothing may be changed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestHosts, type TestHosts } from "../support/ssh-hosts.ts";
import { BaremetalProvisioner } from "../../provisioners/baremetal/index.ts";
import { fingerprint } from "../../provisioners/keys.ts";
import { plan } from "../../topology/plan.ts";
import { LabFile } from "../../topology/schema.ts";
import { LabState } from "../../topology/state.ts";
import { RecordingReporter } from "../../topology/progress.ts";
import { LabError } from "../../topology/errors.ts";
import { runtimeArch } from "../../lib/arch.ts";

let env: TestHosts;
let home: string;
beforeAll(async () => {
  env = await createTestHosts(2);
  home = await mkdtemp(join(tmpdir(), "lab-bm-"));
});
afterAll(async () => {
  await env?.destroy();
  await rm(home, { recursive: true, force: true });
});

describe("baremetal precheck", () => {
  it("reports every problem of every host at once, records an accepted host key, changes nothing", async () => {
    const [h0, h1] = env.hosts;
    const net = h0!.address.split(".").slice(0, 3).join(".");
    const p = plan(
      LabFile.parse({
        apiVersion: "lab/v1alpha1",
        kind: "Lab",
        metadata: { name: "bm" },
        spec: {
          provider: { type: "baremetal" },
          network: { cidr: `${net}.0/24`, vip: `${net}.100` },
          nodes: [
            {
              name: "metal-1",
              role: "master",
              address: h0!.address,
              ssh: {
                user: env.plainUser,
                key: env.clientKeyPath,
                hostKey: await fingerprint(h0!.hostPublicKey),
              },
            },
            {
              name: "metal-2",
              role: "worker",
              address: h1!.address,
              ssh: { user: env.sudoUser, key: env.clientKeyPath, acceptNewHostKey: true },
            },
            {
              name: "metal-3",
              role: "worker",
              address: h0!.address,
              ssh: { port: 2, user: env.sudoUser, key: env.clientKeyPath, acceptNewHostKey: true },
            },
          ],
        },
      }),
    );
    const state = new LabState("bm", home);
    await state.ensure();
    const reporter = new RecordingReporter();
    const prov = new BaremetalProvisioner({
      // Port 22 stands in for etcd's 2379: the test hosts' sshd holds it, seen by the real `ss` in the netns.
      requirements: {
        memMiB: { master: 10_000_000, worker: 1 },
        diskFreeMiB: 1,
        arches: [runtimeArch()],
        ports: { master: [22], worker: [] },
      },
    });
    const err = await prov.create({ plan: p, state, reporter }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LabError);
    const msg = (err as LabError).message;
    expect((err as LabError).code).toBe("HOST_PRECHECK_FAILED");
    expect(msg).toMatch(/metal-1: is not running systemd/);
    expect(msg).toMatch(new RegExp(`metal-1: user ${env.plainUser} cannot run sudo without a password`));
    expect(msg).toMatch(/metal-1: has \d+ MiB of memory, a master needs at least 10000000 MiB/);
    expect(msg).toMatch(/metal-1: already has something listening on TCP 22/);
    expect(msg).toMatch(/metal-2: is not running systemd/);
    expect(msg).not.toMatch(/metal-2: .*sudo/);
    expect(msg).toMatch(/metal-3: cannot connect to metal-3 .*:2\)/);
    expect(msg).toMatch(/^6 problems with the bare-metal hosts; nothing was changed/);
    // First contact with metal-2 recorded its key; metal-1 was pinned, metal-3 never answered.
    const rec = await state.readJson<{ fingerprint: string }>("hosts/metal-2/accepted-host-key.json");
    expect(rec?.fingerprint).toBe(await fingerprint(h1!.hostPublicKey));
    expect(await state.readJson("hosts/metal-1/accepted-host-key.json")).toBeUndefined();
    expect(reporter.notices.join("\n")).toContain("metal-2: accepted host key SHA256:");
    expect(await state.readJson("machines.json")).toBeUndefined();
    expect(reporter.events.filter((e) => e.step === "baremetal.packages")).toEqual([]);
  });
});
