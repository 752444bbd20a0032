import type { Machine } from "../../provisioners/provisioner.ts";
import { CHRONY_CONF, renderChronyConf, renderChronyUnit, type ChronyRole } from "../../templates/chrony.ts";
import { HOST_PATHS } from "../../templates/paths.ts";
import { emptyWork } from "../applied.ts";
import { applyOnNodes, ensureUnitRunning, installFiles, maskDistroUnit } from "./context.ts";
import type { StepContext, StepOutcome } from "./context.ts";

/** The distribution's chrony.service would hold port 123 with an internet pool: masked, recorded. */
const MASK_DISTRO_CHRONY = maskDistroUnit("chrony.service");

/** Who serves time and who follows: the first master serves the lab subnet. Pure. */
export function chronyRole(ctx: Pick<StepContext, "plan">, node: string): ChronyRole {
  const first = ctx.plan.masters[0]!;
  return node === first.name ? { serve: ctx.plan.network.cidr } : { follow: first.address };
}

/** The nodes that keep a clock of their own (not a container reading the lab host's clock). Pure. */
export function ownClockMachines(ctx: Pick<StepContext, "plan" | "machine">): Machine[] {
  return ctx.plan.nodes.map((n) => ctx.machine(n.name)).filter((m) => !m.sharesHostClock);
}

/**
 * Every node's clock set from the lab host, then chrony keeps them together: guests have no time
 * source (TCG guests drift seconds apart) and etcd complains about clock differences. A node is
 * skipped when chrony runs with lab's config and its clock is within a second of the host's. Nodes
 * that share the lab host's clock (nspawn machines) have nothing to set: no SSH round trip at all.
 */
export async function clockStep(ctx: StepContext): Promise<StepOutcome> {
  const machines = ownClockMachines(ctx);
  const shared = ctx.plan.nodes.length - machines.length;
  if (!machines.length)
    return {
      changed: false,
      checkOnly: true,
      message: `all ${shared} nodes read this host's clock: nothing to set`,
    };
  const withoutChrony: string[] = [];
  const { changed } = await applyOnNodes(ctx, "clock.sync", machines, {
    async work(m, facts) {
      const w = emptyWork();
      if (!facts.chronyd) {
        withoutChrony.push(m.name);
        w.inputs.chronyd = "absent";
        return w;
      }
      w.files.push(
        { path: CHRONY_CONF, data: renderChronyConf(chronyRole(ctx, m.name)) },
        { path: `${HOST_PATHS.unitDir}/lab-chrony.service`, data: renderChronyUnit() },
      );
      w.units.push("lab-chrony.service");
      return w;
    },
    async unhealthy(m) {
      const off = (await ctx.facts(m)).clockOffsetS;
      return off ? `clock ${off > 0 ? "+" : ""}${off} s off the lab host` : undefined;
    },
    async apply(_m, s, work) {
      // One exec (each costs seconds on a busy TCG guest): set the clock when it is more than a
      // second off, then mask the distro's chrony.
      const now = Date.now() / 1000;
      await s.run(
        `d=$(( $(date +%s) - ${Math.round(now)} )); if [ $d -gt 1 ] || [ $d -lt -1 ]; then date -u -s @${now.toFixed(3)} >/dev/null; fi; ` +
          `if command -v chronyd >/dev/null; then\n${MASK_DISTRO_CHRONY}\nfi`,
        { root: true, what: "setting the clock from the lab host" },
      );
      if (!work.units.length) return false;
      const n = await installFiles(s, work.files, ctx.signal);
      return (await ensureUnitRunning(s, "lab-chrony.service", n > 0)) || n > 0;
    },
  });
  if (withoutChrony.length)
    ctx.reporter.notice(
      `no chronyd on ${withoutChrony.sort().join(", ")}: clocks were set once from this host and will drift (install the chrony package)`,
    );
  return {
    changed: changed > 0,
    message:
      `time from ${ctx.plan.masters[0]!.name} (chrony) on ${machines.length - withoutChrony.length}/${machines.length} nodes` +
      (shared ? `; ${shared} read this host's clock` : ""),
  };
}
