import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { LabError } from "../../topology/errors.ts";
import { waitUntilReady } from "../../topology/readiness.ts";
import { clientURL, etcdClientURLs } from "../../templates/etcd.ts";
import { renderLabServerUnit } from "../../templates/lab-server.ts";
import { HOST_PATHS } from "../../templates/paths.ts";
import {
  buildExecutable,
  EXECUTABLES,
  executableAssets,
  nodeRuntime,
  type Artifact,
  type ArtifactFile,
} from "../artifacts.ts";
import { etcdMembers } from "../etcd.ts";
import type { SshSession } from "../../ssh/session.ts";
import { emptyWork, type NodeWork } from "../applied.ts";
import { applyOnNodes, ensureUnitRunning, installFiles } from "./context.ts";
import type { StepContext, StepOutcome } from "./context.ts";
import { apiServerFiles, controllerManagerFiles } from "./files.ts";
import { adminGet } from "./wait-ready.ts";

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Builds (once per run) the executable `name` into the lab state's artifacts/ directory. */
const built = new Map<string, Promise<Artifact>>();
export function executable(
  ctx: Pick<StepContext, "state">,
  name: keyof typeof EXECUTABLES,
): Promise<Artifact> {
  const key = `${ctx.state.dir}:${name}`;
  let a = built.get(key);
  if (!a) {
    const outDir = ctx.state.path("artifacts");
    a = executableAssets(name, outDir).then((assets) =>
      buildExecutable({ name, entry: `${REPO_ROOT}/${EXECUTABLES[name]}`, outDir, assets, root: REPO_ROOT }),
    );
    a.catch(() => built.delete(key)); // a failed build is retried on the next run
    built.set(key, a);
  }
  return a;
}

/** The files an executable consists of on a machine: the runtime, its bundle, launcher and assets. */
export async function executableFiles(artifact: Artifact): Promise<ArtifactFile[]> {
  return [await nodeRuntime(), ...artifact.files];
}

/** The same files as a step's NodeWork uploads, so a rerun can tell they are still in place. */
export async function executableUploads(artifact: Artifact): Promise<NodeWork["uploads"]> {
  return (await executableFiles(artifact)).map((f) => ({ path: f.remote, sha256: f.sha256, mode: f.mode }));
}

/** Uploads the runtime and an executable's files; unchanged files (same sha256) are skipped. */
export async function installExecutable(
  s: SshSession,
  artifact: Artifact,
  signal?: AbortSignal,
): Promise<number> {
  await s.run(`install -d -m 0755 ${HOST_PATHS.bin} ${HOST_PATHS.lib}`, { root: true });
  const uploaded = await s.uploadMany(
    (await executableFiles(artifact)).map((f) => ({
      source: { file: f.local, sha256: f.sha256 },
      remotePath: f.remote,
      mode: f.mode,
    })),
    { signal },
  );
  return uploaded.length;
}

/** Asks lab-server on `address` for /readyz once, with the admin certificate; why not, or undefined when ready. */
export async function serverNotReady(
  ctx: StepContext,
  address: string,
  signal?: AbortSignal,
): Promise<string | undefined> {
  const tls = {
    ca: await readFile(ctx.state.path("pki", "ca.crt"), "utf8"),
    cert: await readFile(ctx.state.path("pki", "admin.crt"), "utf8"),
    key: await readFile(ctx.state.path("pki", "admin.key"), "utf8"),
  };
  try {
    const r = await adminGet(
      tls,
      `https://${address}:${ctx.plan.cluster.apiServerPort}/readyz`,
      10_000,
      ctx.dialer,
      signal,
    );
    return r.status === 200 ? undefined : `/readyz answered ${r.status}: ${r.body.slice(0, 200)}`;
  } catch (err) {
    return `/readyz: ${(err as Error).message}`;
  }
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
  await waitUntilReady(
    {
      name: `control-plane.ready (lab-server /readyz on ${name})`,
      async probe(signal) {
        const why = await serverNotReady(ctx, address, signal);
        return { ready: why === undefined, detail: why };
      },
    },
    {
      timeoutMs,
      intervalMs: 2_000,
      attemptTimeoutMs: 10_000,
      ...(ctx.signal ? { signal: ctx.signal } : {}),
      async giveUp({ last, elapsedMs, signal }) {
        const journal = await ctx.sessions
          .get(ctx.machine(name))
          .then((s) =>
            s.run("journalctl -u lab-server -n 15 --no-pager -o cat", {
              root: true,
              timeoutMs: 10_000,
              signal,
            }),
          )
          .catch(() => "");
        return new LabError({
          code: "CONTROL_PLANE_NOT_READY",
          what: `lab-server on ${name} not ready after ${Math.round(elapsedMs / 1000)} s (${last ?? "no answer"})${journal ? `; last log lines:\n${journal}` : ""}`,
          where: name,
          fix: `look at \`lab ssh ${name} -- sudo journalctl -u lab-server\``,
          source: "host",
        });
      },
    },
  );
}

const CONTROL_PLANE_READY_TIMEOUT_MS = 240_000;

export async function controlPlaneStep(ctx: StepContext): Promise<StepOutcome> {
  const server = await executable(ctx, "lab-server");
  const etcdServers = etcdClientURLs(etcdMembers(ctx.plan));
  const masters = ctx.plan.masters.map((m) => ctx.machine(m.name));
  const { changed } = await applyOnNodes(ctx, "control-plane.install", masters, {
    async work(m) {
      const planned = ctx.planned(m.name);
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
      return {
        ...emptyWork(),
        files: [
          ...(await apiServerFiles(ctx.state)),
          ...(await controllerManagerFiles(ctx.state, ctx.plan.cluster.apiServerPort)),
          { path: `${HOST_PATHS.unitDir}/lab-server.service`, data: unit },
        ],
        uploads: await executableUploads(server),
        units: ["lab-server.service"],
      };
    },
    // From the lab host, no SSH: an active unit whose apiserver does not answer is not a result.
    unhealthy: (m) => serverNotReady(ctx, ctx.planned(m.name).address),
    async apply(m, s, work) {
      const planned = ctx.planned(m.name);
      let n = await installExecutable(s, server, ctx.signal);
      n += await installFiles(s, work.files, ctx.signal);
      const started = (await ensureUnitRunning(s, "lab-server.service", n > 0)) || n > 0;
      const t0 = Date.now();
      await waitServerReady(ctx, m.name, planned.address);
      ctx.reporter.event({
        step: "control-plane.ready",
        node: m.name,
        state: "done",
        message: "/readyz answers",
        elapsedMs: Date.now() - t0,
      });
      return started;
    },
  });
  return {
    changed: changed > 0,
    message: `lab-server on ${masters.length} masters, etcd ${etcdMembers(ctx.plan).map(clientURL).length} members`,
  };
}
