import {
  KEEPALIVED_CONF,
  READYZ_CHECK,
  interfaceFor,
  renderKeepalivedConf,
  renderKeepalivedUnit,
  renderReadyzCheck,
  virtualRouterIdFor,
} from "../../templates/keepalived.ts";
import { HOST_PATHS, LAB_SERVER_HEALTH_PORT } from "../../templates/paths.ts";
import { LabError } from "../../topology/errors.ts";
import {
  ensureUnitRunning,
  forEachMachine,
  installFiles,
  type StepContext,
  type StepOutcome,
} from "./context.ts";
import { nodeIdentityFiles } from "./files.ts";

/** keepalived on every master: the VIP follows a master whose apiserver answers /readyz. */
export async function vipStep(ctx: StepContext): Promise<StepOutcome> {
  const p = ctx.plan;
  // One master without its own VIP: the endpoint is the master's address, nothing to hold. An
  // explicit VIP is held by keepalived even then, so the kubeconfig's endpoint answers.
  if (p.masters.length === 1 && p.network.vip === p.masters[0]!.address)
    return { changed: false, message: `one master: the API endpoint is ${p.network.vip}` };
  const masters = p.masters.map((m) => ctx.machine(m.name));
  const changed = await forEachMachine(ctx, "vip.install", masters, async (m, s) => {
    const planned = ctx.planned(m.name);
    const iface = interfaceFor(await s.run("ip -o -4 addr show"), planned.address);
    if (!iface) {
      throw new LabError({
        code: "VIP_NO_INTERFACE",
        what: `${m.name} has no interface with address ${planned.address}`,
        where: m.name,
        fix: "the node's address in the topology must be configured on one of its interfaces",
        source: "user",
      });
    }
    // As root: keepalived lives in /usr/sbin, not on a normal user's PATH.
    await s.run("command -v keepalived >/dev/null && command -v openssl >/dev/null", {
      root: true,
      what: "looking for keepalived and openssl (packages keepalived, openssl)",
    });
    const conf = renderKeepalivedConf({
      name: m.name,
      address: planned.address,
      peers: p.masters.filter((o) => o.name !== m.name).map((o) => o.address),
      iface,
      vip: p.network.vip,
      prefix: p.network.prefix,
      virtualRouterId: virtualRouterIdFor(p.id),
      priority: 150 - planned.index * 10,
      apiServerPort: p.cluster.apiServerPort,
    });
    const n = await installFiles(
      s,
      [
        ...(await nodeIdentityFiles(ctx.state, m.name)),
        { path: READYZ_CHECK, data: renderReadyzCheck(LAB_SERVER_HEALTH_PORT), mode: 0o755 },
        { path: KEEPALIVED_CONF, data: conf },
        { path: `${HOST_PATHS.unitDir}/lab-keepalived.service`, data: renderKeepalivedUnit() },
      ],
      ctx.signal,
    );
    await ensureUnitRunning(s, "lab-keepalived.service", n > 0);
    return n > 0;
  });
  return { changed: changed > 0, message: `VIP ${p.network.vip} among ${masters.length} masters` };
}
