import type { Machine } from "../../provisioners/provisioner.ts";
import { renderEtcdUnit, clientURL } from "../../templates/etcd.ts";
import { HOST_PATHS } from "../../templates/paths.ts";
import { etcdctlHealthArgs, etcdMemberConfig, etcdMembers, waitForEtcdHealthy } from "../etcd.ts";
import { shq } from "../../ssh/session.ts";
import { emptyWork } from "../applied.ts";
import { applyOnNodes, ensureUnitRunning, installFiles, maskDistroUnit } from "./context.ts";
import type { StepContext, StepOutcome } from "./context.ts";
import { etcdFiles } from "./files.ts";

/**
 * Debian's etcd-server package starts its own `etcd.service` on localhost:2379; it would hold the
 * port lab's member needs. It is masked (and recorded, so `lab down` unmasks it).
 */
const MASK_DISTRO_ETCD = maskDistroUnit("etcd.service");

export async function etcdStep(ctx: StepContext): Promise<StepOutcome> {
  const masters = ctx.plan.masters.map((m) => ctx.machine(m.name));
  const { ran, changed } = await applyOnNodes(ctx, "etcd.install", masters, {
    async work(m, facts) {
      const unit = renderEtcdUnit(etcdMemberConfig(ctx.plan, ctx.planned(m.name), { arch: facts.arch }));
      return {
        ...emptyWork(),
        files: [
          ...(await etcdFiles(ctx.state, m.name)),
          { path: `${HOST_PATHS.unitDir}/lab-etcd.service`, data: unit },
        ],
        units: ["lab-etcd.service"],
      };
    },
    async apply(_m, s, work) {
      await s.run(MASK_DISTRO_ETCD, { root: true, what: "masking the distribution's etcd.service" });
      await s.run(
        `install -d -m 0755 ${HOST_PATHS.pki} && install -d -m 0750 -o etcd -g etcd ${HOST_PATHS.pki}/etcd && install -d -m 0700 -o etcd -g etcd ${HOST_PATHS.etcdData}`,
        { root: true, what: "creating etcd directories (is etcd-server installed?)" },
      );
      const n = await installFiles(s, work.files, ctx.signal);
      return (await ensureUnitRunning(s, "lab-etcd.service", n > 0)) || n > 0;
    },
  });
  const members = etcdMembers(ctx.plan);
  // Every member's result still stands (unit active, same config): the quorum formed before.
  if (!ran) return { changed: false, message: `${members.length} members, lab-etcd active on every master` };
  const verdict = await step(ctx, members, masters);
  return {
    changed: changed > 0,
    message: `${verdict.healthy.length}/${members.length} members healthy`,
  };
}

/** The named readiness check: every member healthy, asked through etcdctl on the masters in turn. */
async function step(ctx: StepContext, members: ReturnType<typeof etcdMembers>, masters: Machine[]) {
  const started = Date.now();
  ctx.reporter.event({
    step: "etcd.health",
    state: "start",
    message: `waiting for ${members.length} healthy members`,
  });
  const pki = `${HOST_PATHS.pki}/etcd`;
  const args = etcdctlHealthArgs(members.map(clientURL), {
    ca: `${pki}/ca.crt`,
    cert: `${pki}/server.crt`,
    key: `${pki}/server.key`,
  });
  let turn = 0;
  const probe = async (signal: AbortSignal) => {
    const m = masters[turn++ % masters.length]!;
    const s = await ctx.sessions.get(m);
    return (
      await s.sudo(`ETCDCTL_API=3 etcdctl ${args.map(shq).join(" ")}`, {
        timeoutMs: 20_000,
        signal,
      })
    ).stdout;
  };
  try {
    const v = await waitForEtcdHealthy(members, probe, {
      timeoutMs: 180_000,
      intervalMs: 2_000,
      signal: ctx.signal,
    });
    ctx.reporter.event({ step: "etcd.health", state: "done", elapsedMs: Date.now() - started });
    return v;
  } catch (err) {
    ctx.reporter.event({
      step: "etcd.health",
      state: "failed",
      message: (err as Error).message,
      elapsedMs: Date.now() - started,
    });
    throw err;
  }
}
