import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { LabError } from "../../topology/errors.ts";
import { clientURL, etcdClientURLs } from "../../templates/etcd.ts";
import { renderLabServerUnit } from "../../templates/lab-server.ts";
import { HOST_PATHS } from "../../templates/paths.ts";
import {
  buildExecutable,
  EXECUTABLE_ASSETS,
  EXECUTABLES,
  nodeRuntime,
  type Artifact,
  type ArtifactFile,
} from "../artifacts.ts";
import { etcdMembers } from "../etcd.ts";
import type { SshSession } from "../ssh.ts";
import {
  ensureUnitRunning,
  forEachMachine,
  installFiles,
  type StepContext,
  type StepOutcome,
} from "./context.ts";
import { apiServerFiles, controllerManagerFiles } from "./files.ts";
import { adminGet } from "./wait-ready.ts";

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Builds (once per run) the executable `name` into the lab state's artifacts/ directory. */
const built = new Map<string, Promise<Artifact>>();
export function executable(ctx: StepContext, name: keyof typeof EXECUTABLES): Promise<Artifact> {
  const key = `${ctx.state.dir}:${name}`;
  let a = built.get(key);
  if (!a) {
    a = buildExecutable({
      name,
      entry: `${REPO_ROOT}/${EXECUTABLES[name]}`,
      outDir: ctx.state.path("artifacts"),
      assets: EXECUTABLE_ASSETS[name],
      root: REPO_ROOT,
    });
    a.catch(() => built.delete(key)); // a failed build is retried on the next run
    built.set(key, a);
  }
  return a;
}

/** Uploads the runtime and an executable's files; unchanged files (same sha256) are skipped. */
export async function installExecutable(
  s: SshSession,
  artifact: Artifact,
  signal?: AbortSignal,
): Promise<number> {
  await s.run(`install -d -m 0755 ${HOST_PATHS.bin} ${HOST_PATHS.lib}`, { root: true });
  const files: ArtifactFile[] = [await nodeRuntime(), ...artifact.files];
  const uploaded = await s.uploadMany(
    files.map((f) => ({ source: { file: f.local, sha256: f.sha256 }, remotePath: f.remote, mode: f.mode })),
    { signal },
  );
  return uploaded.length;
}

/**
 * Waits until lab-server on `address` answers /readyz to the admin certificate. Under TCG the
 * guest runs Node ~14x slower than the host: the bundle alone takes ~10 s to load, so be generous.
 */
export async function waitServerReady(
  ctx: StepContext,
  name: string,
  address: string,
  timeoutMs = CONTROL_PLANE_READY_TIMEOUT_MS,
): Promise<void> {
  const tls = {
    ca: await readFile(ctx.state.path("pki", "ca.crt"), "utf8"),
    cert: await readFile(ctx.state.path("pki", "admin.crt"), "utf8"),
    key: await readFile(ctx.state.path("pki", "admin.key"), "utf8"),
  };
  const url = `https://${address}:${ctx.plan.cluster.apiServerPort}/readyz`;
  const started = Date.now();
  let last = "";
  for (;;) {
    if (ctx.signal?.aborted)
      throw new LabError({ code: "ABORTED", what: "waiting for lab-server was cancelled" });
    try {
      const r = await adminGet(tls, url, 10_000);
      if (r.status === 200) return;
      last = `/readyz answered ${r.status}: ${r.body.slice(0, 200)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() - started > timeoutMs) {
      const journal = await ctx.sessions
        .get(ctx.machine(name))
        .then((s) => s.run("journalctl -u lab-server -n 15 --no-pager -o cat", { root: true }))
        .catch(() => "");
      throw new LabError({
        code: "CONTROL_PLANE_NOT_READY",
        what: `lab-server on ${name} not ready after ${Math.round(timeoutMs / 1000)} s (${last})${journal ? `; last log lines:\n${journal}` : ""}`,
        where: name,
        fix: `look at \`lab ssh ${name} -- sudo journalctl -u lab-server\``,
        source: "host",
      });
    }
    await new Promise((r) => setTimeout(r, 2_000));
  }
}

const CONTROL_PLANE_READY_TIMEOUT_MS = 240_000;

export async function controlPlaneStep(ctx: StepContext): Promise<StepOutcome> {
  const server = await executable(ctx, "lab-server");
  const etcdServers = etcdClientURLs(etcdMembers(ctx.plan));
  const masters = ctx.plan.masters.map((m) => ctx.machine(m.name));
  const changed = await forEachMachine(ctx, "control-plane.install", masters, async (m, s) => {
    const planned = ctx.planned(m.name);
    let n = await installExecutable(s, server, ctx.signal);
    const unit = renderLabServerUnit({
      address: planned.address,
      etcdServers,
      serviceClusterIPRange: ctx.plan.cluster.serviceCIDR,
      securePort: ctx.plan.cluster.apiServerPort,
      loops: {
        clusterCIDR: ctx.plan.cluster.podCIDR,
        nodeCIDRMaskSize: ctx.plan.cluster.nodeCIDRMaskSize,
        podEvictionTimeoutSeconds: ctx.plan.cluster.podEvictionTimeoutSeconds,
      },
    });
    n += await installFiles(
      s,
      [
        ...(await apiServerFiles(ctx.state)),
        ...(await controllerManagerFiles(ctx.state, ctx.plan.cluster.apiServerPort)),
        { path: `${HOST_PATHS.unitDir}/lab-server.service`, data: unit },
      ],
      ctx.signal,
    );
    await ensureUnitRunning(s, "lab-server.service", n > 0);
    const started = Date.now();
    await waitServerReady(ctx, m.name, planned.address);
    ctx.reporter.event({
      step: "control-plane.ready",
      node: m.name,
      state: "done",
      message: "/readyz answers",
      elapsedMs: Date.now() - started,
    });
    return n > 0;
  });
  return {
    changed: changed > 0,
    message: `lab-server on ${masters.length} masters, etcd ${etcdMembers(ctx.plan).map(clientURL).length} members`,
  };
}
