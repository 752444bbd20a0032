/**
 * The bare-metal provisioner: the machines already exist. `create` adopts the hosts the topology
 * lists: it connects with the pinned host key (or records the key on first contact when the topology
 * says acceptNewHostKey), checks every host and reports every problem at once, then installs the
 * Debian packages the cluster needs with apt. `destroy` removes what lab installed (see teardown.ts).
 */
import { homedir } from "node:os";
import { join } from "node:path";
import { runtimeArch } from "../../lib/arch.ts";
import { collectOverSsh } from "../../ssh/collect.ts";
import { SshSession, shq } from "../../ssh/session.ts";
import { LabError } from "../../topology/errors.ts";
import type { Plan, PlannedNode } from "../../topology/plan.ts";
import type { LabState } from "../../topology/state.ts";
import { ensureLabSshKey } from "../keys.ts";
import {
  nodeMachine,
  type Machine,
  type MachineStatus,
  type ProvisionContext,
  type Provisioner,
} from "../provisioner.ts";
import {
  FACTS_SCRIPT,
  defaultRequirements,
  formatHostProblems,
  judgeHost,
  missingPackages,
  parseFacts,
  requiredPackages,
  type HostProblem,
  type Requirements,
} from "./precheck.ts";
import { renderTeardownScript } from "./teardown.ts";

/** `~/x` → `$HOME/x`: topology files are written by people who expect the shell's meaning. */
export function expandHome(path: string): string {
  return path === "~" || path.startsWith("~/") ? join(homedir(), path.slice(1)) : path;
}

interface RecordedHostKey {
  fingerprint: string;
  acceptedAt: string;
}

/** The machine for a planned host; the host key pin comes from the topology or from the lab state. */
export async function machineFor(state: LabState, node: PlannedNode): Promise<Machine> {
  const key = node.ssh.key ? expandHome(node.ssh.key) : (await ensureLabSshKey(state)).privateKeyPath;
  const recorded = await state.readJson<RecordedHostKey>(`hosts/${node.name}/accepted-host-key.json`);
  return nodeMachine(node, {
    port: node.ssh.port,
    user: node.ssh.user,
    privateKeyPath: key,
    hostKey: node.ssh.hostKey ?? recorded?.fingerprint ?? "",
  });
}

/** A host's own logs, collected as root: file name → command. */
const HOST_LOGS: Record<string, string> = {
  "journal.txt": "journalctl -b --no-pager -o short-iso -n 5000 2>&1",
  "dmesg.txt": "dmesg 2>&1",
};

export interface BaremetalOptions {
  requirements?: Requirements;
  /** Skip apt (tests on hosts that are not ours to change). */
  installPackages?: boolean;
}

export class BaremetalProvisioner implements Provisioner {
  readonly name = "baremetal" as const;
  constructor(private readonly opts: BaremetalOptions = {}) {}

  /** Connects to every host (recording first-contact host keys when allowed). Problems are collected, not thrown. */
  private async connectAll(
    ctx: ProvisionContext,
    problems: HostProblem[],
  ): Promise<Map<string, { machine: Machine; session: SshSession }>> {
    const out = new Map<string, { machine: Machine; session: SshSession }>();
    await Promise.all(
      ctx.plan.nodes.map(async (node) => {
        const machine = await machineFor(ctx.state, node);
        try {
          const session = await SshSession.connect(machine, {
            acceptNewHostKey: node.ssh.acceptNewHostKey,
            signal: ctx.signal,
            timeoutMs: 15_000,
          });
          if (!machine.ssh.hostKey) {
            await ctx.state.writeJson(`hosts/${node.name}/accepted-host-key.json`, {
              fingerprint: session.seenHostKey,
              acceptedAt: new Date().toISOString(),
            } satisfies RecordedHostKey);
            machine.ssh.hostKey = session.seenHostKey;
            ctx.reporter.notice(
              `${node.name}: accepted host key ${session.seenHostKey} on first contact (recorded in the lab state)`,
            );
          }
          out.set(node.name, { machine, session });
        } catch (err) {
          const e = err instanceof LabError ? err : undefined;
          problems.push({ node: node.name, what: e?.what ?? String(err), fix: e?.fix ?? "check the host" });
        }
      }),
    );
    return out;
  }

  /** Checks every host; throws one error listing every problem of every host. */
  async check(ctx: ProvisionContext): Promise<Machine[]> {
    return (await this.inspect(ctx)).machines;
  }

  /**
   * `check`, plus which required packages each host has (dpkg-query in the same exec, so a rerun
   * on hosts that have them all opens no second connection).
   */
  private async inspect(ctx: ProvisionContext): Promise<{ machines: Machine[]; dpkg: Map<string, string> }> {
    const problems: HostProblem[] = [];
    const dpkg = new Map<string, string>();
    const conns = await this.connectAll(ctx, problems);
    try {
      const req = this.opts.requirements ?? defaultRequirements(runtimeArch());
      await Promise.all(
        [...conns.entries()].map(async ([name, { session }]) => {
          const started = Date.now();
          ctx.reporter.event({ step: "baremetal.check", node: name, state: "start" });
          const node = ctx.plan.nodes.find((n) => n.name === name)!;
          const pkgs = requiredPackages(node.role, ctx.plan.masters.length);
          const out = await session.run(
            `${FACTS_SCRIPT}\ndpkg-query -W -f='pkg \${Package} \${db:Status-Status}\\n' ${pkgs.join(" ")} 2>/dev/null; true`,
            { what: "reading host facts" },
          );
          const facts = parseFacts(out.trim());
          dpkg.set(
            name,
            out
              .split("\n")
              .flatMap((l) => (l.startsWith("pkg ") ? [l.slice(4)] : []))
              .join("\n"),
          );
          const found = judgeHost(node, facts, req);
          problems.push(...found);
          ctx.reporter.event({
            step: "baremetal.check",
            node: name,
            state: found.length ? "failed" : "done",
            message: found.length
              ? `${found.length} problem(s)`
              : `${facts.osName}, ${facts.arch}, ${facts.memMiB} MiB`,
            elapsedMs: Date.now() - started,
          });
        }),
      );
      if (problems.length) {
        const order = ctx.plan.nodes.map((n) => n.name);
        problems.sort((a, b) => order.indexOf(a.node) - order.indexOf(b.node));
        throw new LabError({
          code: "HOST_PRECHECK_FAILED",
          what: `${problems.length} problem${problems.length === 1 ? "" : "s"} with the bare-metal hosts; nothing was changed:\n${formatHostProblems(problems)}`,
          source: "host",
        });
      }
      return { machines: [...conns.values()].map((c) => c.machine), dpkg };
    } finally {
      for (const c of conns.values()) c.session.close();
    }
  }

  async create(ctx: ProvisionContext): Promise<Machine[]> {
    const { machines, dpkg } = await this.inspect(ctx);
    if (this.opts.installPackages !== false) {
      await Promise.all(machines.map((m) => this.installPackages(ctx, m, dpkg.get(m.name) ?? "")));
    }
    await ctx.state.writeJson("machines.json", machines);
    return machines;
  }

  /** apt-get installs what `dpkgOut` (from the check) shows missing; connects only then. */
  private async installPackages(ctx: ProvisionContext, machine: Machine, dpkgOut: string): Promise<void> {
    const started = Date.now();
    ctx.reporter.event({ step: "baremetal.packages", node: machine.name, state: "start" });
    const missing = missingPackages(requiredPackages(machine.role, ctx.plan.masters.length), dpkgOut);
    const s = missing.length ? await SshSession.connect(machine, { signal: ctx.signal }) : undefined;
    try {
      if (s) {
        await s.run(
          `export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold ${missing.map(shq).join(" ")}`,
          {
            root: true,
            timeoutMs: 900_000,
            signal: ctx.signal,
            what: `apt-get install ${missing.join(" ")}`,
          },
        );
        const prev =
          (await ctx.state.readJson<string[]>(`hosts/${machine.name}/installed-packages.json`)) ?? [];
        await ctx.state.writeJson(
          `hosts/${machine.name}/installed-packages.json`,
          [...new Set([...prev, ...missing])].sort(),
        );
      }
      ctx.reporter.event({
        step: "baremetal.packages",
        node: machine.name,
        state: missing.length ? "done" : "skipped",
        message: missing.length ? `installed ${missing.join(" ")}` : "all present",
        elapsedMs: Date.now() - started,
      });
    } finally {
      s?.close();
    }
  }

  async status(ctx: ProvisionContext): Promise<MachineStatus[]> {
    return Promise.all(
      ctx.plan.nodes.map(async (node): Promise<MachineStatus> => {
        const machine = await machineFor(ctx.state, node);
        try {
          const s = await SshSession.connect(machine, { signal: ctx.signal, timeoutMs: 10_000 });
          try {
            const units = ["lab-etcd", "lab-server", "lab-keepalived", "lab-agent"];
            const r = await s.exec(`systemctl is-active ${units.join(" ")} 2>/dev/null`);
            const states = r.stdout.split("\n");
            const detail = units.map((u, i) => `${u}=${states[i] || "unknown"}`).join(" ");
            return { name: node.name, state: "running", detail };
          } finally {
            s.close();
          }
        } catch (err) {
          return {
            name: node.name,
            state: "unknown",
            detail: err instanceof LabError ? err.what : String(err),
          };
        }
      }),
    );
  }

  /**
   * What a bare-metal host has instead of a serial console: its boot journal and kernel log, into
   * `dir/NODE/` (for `lab export logs`; the journals of lab's units come from the bootstrap).
   */
  async collectLogs(ctx: ProvisionContext, dir: string): Promise<void> {
    const machines = await Promise.all(ctx.plan.nodes.map((n) => machineFor(ctx.state, n)));
    const r = await collectOverSsh(machines, dir, HOST_LOGS, ctx.signal);
    if (r.failed.length)
      ctx.reporter.notice(`could not collect logs from ${r.failed.join(", ")} (see its error.txt)`);
  }

  /**
   * Removes lab's units, executables, configuration and data from every host. Hosts come from the
   * plan or, when the topology is gone, from `machines.json` in the state. Packages stay (listed).
   */
  async destroy(ctx: Omit<ProvisionContext, "plan"> & { plan?: Plan; labName: string }): Promise<void> {
    const machines = ctx.plan
      ? await Promise.all(ctx.plan.nodes.map((n) => machineFor(ctx.state, n)))
      : ((await ctx.state.readJson<Machine[]>("machines.json")) ?? []);
    // A 1-master lab without keepalived uses the master's own address as its API endpoint (plan's
    // `vip`): never delete a host's own address.
    const addresses = new Set(machines.flatMap((m) => [m.address, m.ssh.host]));
    const vip = ctx.plan?.network.vip;
    const script = renderTeardownScript({
      vip: vip && !addresses.has(vip) ? vip : undefined,
      prefix: ctx.plan?.network.prefix,
    });
    const failures: string[] = [];
    await Promise.all(
      machines.map(async (m) => {
        const started = Date.now();
        ctx.reporter.event({ step: "baremetal.destroy", node: m.name, state: "start" });
        try {
          if (!m.ssh.hostKey)
            throw new LabError({
              code: "HOST_KEY_UNKNOWN",
              what: "no host key was ever recorded; lab never touched it",
            });
          // The script is idempotent: a session lost mid-way (exit 255: no exit status, e.g. a busy
          // TCG guest missing SSH keepalives while its services stop) is retried on a new connection.
          for (let attempt = 1; ; attempt++) {
            const s = await SshSession.connect(m, { signal: ctx.signal, timeoutMs: 15_000 });
            try {
              const r = await s.sudo(script);
              if (r.code === 0) break;
              if (r.code !== 255 || attempt >= 3) {
                const detail = (r.stderr || r.stdout).trim().split("\n").slice(-5).join(" | ");
                throw new LabError({
                  code: "REMOTE_COMMAND_FAILED",
                  what: `removing lab's units, files and data failed on ${m.name} (exit ${r.code}): ${detail}`,
                  where: m.name,
                  source: "host",
                });
              }
              ctx.reporter.notice(`${m.name}: the SSH session was lost while cleaning up; retrying`);
            } finally {
              s.close();
            }
          }
          const pkgs = (await ctx.state.readJson<string[]>(`hosts/${m.name}/installed-packages.json`)) ?? [];
          if (pkgs.length)
            ctx.reporter.notice(
              `${m.name}: left the Debian packages lab installed: ${pkgs.join(" ")} (apt-get purge them if unwanted)`,
            );
          ctx.reporter.event({
            step: "baremetal.destroy",
            node: m.name,
            state: "done",
            elapsedMs: Date.now() - started,
          });
        } catch (err) {
          const what = err instanceof LabError ? err.what : String(err);
          if (err instanceof LabError && err.code === "HOST_KEY_UNKNOWN") {
            ctx.reporter.event({ step: "baremetal.destroy", node: m.name, state: "skipped", message: what });
            return;
          }
          failures.push(`${m.name}: ${what}`);
          ctx.reporter.event({
            step: "baremetal.destroy",
            node: m.name,
            state: "failed",
            message: what,
            elapsedMs: Date.now() - started,
          });
        }
      }),
    );
    if (failures.length) {
      throw new LabError({
        code: "DESTROY_INCOMPLETE",
        what: `could not clean ${failures.length} host(s):\n  ${failures.join("\n  ")}`,
        fix: "make the hosts reachable and run `lab down` again; it is safe to repeat",
        source: "host",
      });
    }
  }
}
