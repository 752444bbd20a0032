import {
  KEEPALIVED_CONF,
  READYZ_CHECK,
  interfaceFor,
  renderKeepalivedConf,
  renderKeepalivedUnit,
  renderReadyzCheck,
  virtualRouterIdFor,
} from "../../templates/keepalived.ts";
import { labServerHealthPort } from "../../templates/lab-server.ts";
import { HOST_PATHS } from "../../templates/paths.ts";
import { LabError } from "../../topology/errors.ts";
import { waitUntilReady } from "../../topology/readiness.ts";
import { emptyWork } from "../applied.ts";
import { applyOnNodes, ensureUnitRunning, installFiles } from "./context.ts";
import type { StepContext, StepOutcome } from "./context.ts";
import { nodeIdentityFiles } from "./files.ts";
import type { Machine } from "../../provisioners/provisioner.ts";

/** keepalived on every master: the VIP follows a master whose apiserver answers /readyz. */
export async function vipStep(ctx: StepContext): Promise<StepOutcome> {
  const p = ctx.plan;
  // One master without its own VIP: the endpoint is the master's address, nothing to hold. An
  // explicit VIP is held by keepalived even then, so the kubeconfig's endpoint answers.
  if (p.masters.length === 1 && p.network.vip === p.masters[0]!.address)
    return { changed: false, checkOnly: true, message: `one master: the API endpoint is ${p.network.vip}` };
  const masters = p.masters.map((m) => ctx.machine(m.name));
  const { changed } = await applyOnNodes(ctx, "vip.install", masters, {
    async work(m, facts) {
      const planned = ctx.planned(m.name);
      const iface = interfaceFor(facts.addresses, planned.address);
      if (!iface) {
        throw new LabError({
          code: "VIP_NO_INTERFACE",
          what: `${m.name} has no interface with address ${planned.address}`,
          where: m.name,
          fix: "the node's address in the topology must be configured on one of its interfaces",
          source: "user",
        });
      }
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
      return {
        ...emptyWork(),
        files: [
          ...(await nodeIdentityFiles(ctx.state, m.name)),
          {
            path: READYZ_CHECK,
            data: renderReadyzCheck(labServerHealthPort(p.cluster.apiServerPort)),
            mode: 0o755,
          },
          { path: KEEPALIVED_CONF, data: conf },
          { path: `${HOST_PATHS.unitDir}/lab-keepalived.service`, data: renderKeepalivedUnit() },
        ],
        units: ["lab-keepalived.service"],
      };
    },
    async apply(_m, s, work) {
      // As root: keepalived lives in /usr/sbin, not on a normal user's PATH.
      await s.run("command -v keepalived >/dev/null && command -v bash >/dev/null", {
        root: true,
        what: "looking for keepalived and bash (packages keepalived, bash)",
      });
      const n = await installFiles(s, work.files, ctx.signal);
      return (await ensureUnitRunning(s, "lab-keepalived.service", n > 0)) || n > 0;
    },
  });
  // Freshly (re)configured: wait until a master holds the VIP, so a check that never passes stops
  // the bootstrap here with each master's verdict, not minutes later as an unreachable API.
  const holder = changed > 0 ? await waitVipHeld(ctx, masters) : undefined;
  return {
    changed: changed > 0,
    message: `VIP ${p.network.vip} among ${masters.length} masters${holder ? `, held by ${holder}` : ""}`,
  };
}

export const VIP_HELD_TIMEOUT_MS = 240_000;

/** The masters whose `ip -4 -o addr show` lists the VIP. Pure. */
export function vipHolders(outputs: Map<string, string>, vip: string): string[] {
  return [...outputs]
    .filter(([, out]) => out.split(/\s+/).some((t) => t.startsWith(`${vip}/`)))
    .map(([name]) => name);
}

/** The named readiness check `vip.held`: one master holds the VIP. */
async function waitVipHeld(
  ctx: StepContext,
  masters: Machine[],
  timeoutMs = VIP_HELD_TIMEOUT_MS,
): Promise<string> {
  const vip = ctx.plan.network.vip;
  const started = Date.now();
  ctx.reporter.event({ step: "vip.held", state: "start", message: `waiting for a master to hold ${vip}` });
  let holders: string[] = [];
  const failed = (what: string) => {
    ctx.reporter.event({ step: "vip.held", state: "failed", message: what, elapsedMs: Date.now() - started });
    return new LabError({
      code: "VIP_NOT_HELD",
      what,
      where: masters.map((m) => m.name).join(", "),
      fix: "look at `journalctl -u lab-keepalived` and `journalctl -u lab-server` on the masters (`lab ssh master-1`); keepalived takes the VIP only where the check passes",
      source: "host",
    });
  };
  await waitUntilReady(
    {
      name: `vip.held (a master holds ${vip})`,
      async probe(signal) {
        const outputs = new Map<string, string>();
        await Promise.all(
          masters.map(async (m) => {
            const s = await ctx.sessions.get(m);
            outputs.set(
              m.name,
              await s.run("ip -4 -o addr show", { signal, timeoutMs: 10_000 }).catch(() => ""),
            );
          }),
        );
        holders = vipHolders(outputs, vip);
        return {
          ready: holders.length > 0,
          detail: `${outputs.size}/${masters.length} masters answered, none holds ${vip}`,
        };
      },
    },
    {
      timeoutMs,
      intervalMs: 3_000,
      attemptTimeoutMs: 20_000,
      ...(ctx.signal ? { signal: ctx.signal } : {}),
      // Why not: each master's own health check, as keepalived runs it.
      async giveUp({ elapsedMs, signal }) {
        const verdicts = await Promise.all(
          masters.map(async (m) => {
            const s = await ctx.sessions.get(m);
            const out = await s
              .run(`${READYZ_CHECK} >/dev/null 2>&1 && echo passes || echo "fails (exit $?)"`, {
                root: true,
                signal,
                timeoutMs: 10_000,
              })
              .catch((err: unknown) => `unknown (${(err as Error).message})`);
            return `${m.name}: /readyz check ${out.trim()}`;
          }),
        );
        return failed(
          `no master holds the VIP ${vip} after ${Math.round(elapsedMs / 1000)} s; ${verdicts.join("; ")}`,
        );
      },
    },
  );
  ctx.reporter.event({
    step: "vip.held",
    state: "done",
    message: `held by ${holders.join(", ")}`,
    elapsedMs: Date.now() - started,
  });
  return holders.join(", ");
}
