/**
 * The rendered systemd units and keepalived configuration, checked by the real tools that will read
 * them on the machines: `systemd-analyze verify` and `keepalived --config-test`.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { execa } from "execa";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { etcdMemberConfig } from "../../bootstrap/etcd.ts";
import { agentConfig } from "../../bootstrap/steps/join-nodes.ts";
import { renderEtcdUnit } from "../../templates/etcd.ts";
import {
  renderKeepalivedConf,
  renderKeepalivedUnit,
  renderReadyzCheck,
  virtualRouterIdFor,
} from "../../templates/keepalived.ts";
import { renderChronyUnit } from "../../templates/chrony.ts";
import { renderLabAgentUnit } from "../../templates/lab-agent.ts";
import { renderLabServerUnit } from "../../templates/lab-server.ts";
import { labPlan } from "../helpers/lab-plan.ts";

const p = labPlan("render", { network: { cidr: "10.240.0.0/24" } });
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lab-render-"));
  return () => rm(dir, { recursive: true, force: true });
});

async function verify(name: string, text: string): Promise<string[]> {
  const file = join(dir, name);
  await writeFile(file, text);
  const r = await execa("systemd-analyze", ["verify", file], { reject: false });
  // lab's own executables are installed by the bootstrap, not on this machine: that is the only allowed complaint.
  return r.stderr
    .split("\n")
    .filter((l) => l.trim() && !/Command \/opt\/lab\/bin\/lab-(server|agent) is not executable/.test(l));
}

describe("rendered configuration, read by the real tools", () => {
  it("systemd accepts every unit", async () => {
    expect(
      await verify(
        "lab-etcd.service",
        renderEtcdUnit(etcdMemberConfig(p, p.masters[0]!, { arch: "x86_64" })),
      ),
    ).toEqual([]);
    expect(await verify("lab-keepalived.service", renderKeepalivedUnit())).toEqual([]);
    // chronyd is a guest package (images/recipe.ts), not a host tool: only its absence may be reported.
    expect(
      (await verify("lab-chrony.service", renderChronyUnit())).filter(
        (l) => !/\/usr\/sbin\/chronyd is not executable/.test(l),
      ),
    ).toEqual([]);
    const server = renderLabServerUnit({
      address: p.masters[0]!.address,
      etcdServers: "https://10.240.0.11:2379",
      serviceClusterIPRange: "10.96.0.0/16",
      securePort: 6443,
    });
    expect(await verify("lab-server.service", server)).toEqual([]);
    expect(await verify("lab-agent.service", renderLabAgentUnit(agentConfig(p, p.masters[0]!)))).toEqual([]);
    // The check catches mistakes: a unit with broken quoting is refused.
    expect(
      (await verify("lab-bad.service", server.replace("ExecStart=", 'ExecStart="'))).length,
    ).toBeGreaterThan(0);
  });

  it("keepalived accepts the VRRP configuration", async () => {
    const file = join(dir, "keepalived.conf");
    const conf = renderKeepalivedConf({
      name: "master-1",
      address: "10.240.0.11",
      peers: ["10.240.0.12", "10.240.0.13"],
      // An interface that exists here; keepalived -t checks it.
      iface: (
        await execa("sh", [
          "-c",
          "ip -o link show | awk -F': ' '$2 != \"lo\" {print $2; exit}' | cut -d@ -f1",
        ])
      ).stdout.trim(),
      vip: p.network.vip,
      prefix: 24,
      virtualRouterId: virtualRouterIdFor(p.id),
      priority: 150,
      apiServerPort: 6443,
    });
    const check = join(dir, "check-apiserver");
    await writeFile(check, renderReadyzCheck(6444), { mode: 0o755 });
    await writeFile(file, conf.replace(/script "[^"]+"/, `script "${check}"`));
    const r = await execa("keepalived", ["--config-test", "-f", file], { reject: false });
    expect(r.stderr + r.stdout).toBe("");
    expect(r.exitCode).toBe(0);
    await writeFile(file, conf.replace("advert_int 1", "advert_intt 1"));
    expect((await execa("keepalived", ["--config-test", "-f", file], { reject: false })).exitCode).not.toBe(
      0,
    );
  });
});
