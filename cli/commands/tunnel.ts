import type { Command } from "commander";
import { apiTargets, defaultTunnelPort, startApiTunnel } from "../../bootstrap/api-tunnel.ts";
import { apiBehindJump, labDialer } from "../../ssh/dialer.ts";
import type { Machine } from "../../provisioners/provisioner.ts";
import { LabError } from "../../topology/errors.ts";
import type { Plan } from "../../topology/plan.ts";
import { LabState } from "../../topology/state.ts";
import type { GlobalOptions } from "../output.ts";
import { resolveLabName } from "./lab-name.ts";

interface TunnelRecord {
  port: number;
}

/** The local port of the lab's tunnel: the one recorded by `lab tunnel --port`, else the lab's default. */
export async function tunnelPort(state: LabState): Promise<number> {
  return (await state.readJson<TunnelRecord>("tunnel.json"))?.port ?? defaultTunnelPort(state.name);
}

/** The lab's plan and machines as `lab up` recorded them; a LabError when the lab is not up. */
export async function recordedLab(state: LabState): Promise<{ plan: Plan; machines: Machine[] }> {
  const plan = await state.readJson<Plan>("plan.json");
  const machines = await state.readJson<Machine[]>("machines.json");
  if (!plan || !machines) {
    throw new LabError({
      code: "LAB_NOT_UP",
      what: `lab "${state.name}" has no machines recorded (${state.dir})`,
      fix: "run `lab up` first (or check the name: `lab tunnel NAME`)",
      source: "user",
    });
  }
  return { plan, machines };
}

/** Whether kubectl reaches this lab's API only through `lab tunnel` (its VIP is behind a jump host). */
export async function needsTunnel(state: LabState): Promise<boolean> {
  const plan = await state.readJson<Plan>("plan.json");
  const machines = await state.readJson<Machine[]>("machines.json");
  return !!plan && !!machines && apiBehindJump(machines, plan.network.vip);
}

export function registerTunnel(program: Command): void {
  program
    .command("tunnel [NAME]")
    .description(
      "forward 127.0.0.1:PORT to the lab's API (VIP, else a master) through the hypervisor's SSH jump; runs until Ctrl-C",
    )
    .option("-f, --file <FILE>", "topology file naming the lab when NAME is not given")
    .option(
      "--port <PORT>",
      "local port (default: the lab's own, 16443-17442; 0: any free one); recorded for `lab kubeconfig`",
    )
    .addHelpText(
      "after",
      `
A lab on a remote hypervisor (qemu+ssh://) has its API on the hypervisor's lab network. Keep
\`lab tunnel\` running and use the kubeconfig from \`lab kubeconfig\` (server https://127.0.0.1:PORT):

  lab tunnel demo &            # or in another terminal
  lab kubeconfig demo --merge
  kubectl get nodes

With --json it prints one line {"lab","port","server","targets","via"} once it listens, then one
line per failed connection.`,
    )
    .action(async (name: string | undefined, opts: { file?: string; port?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const state = new LabState(await resolveLabName(name, opts.file));
      const { plan, machines } = await recordedLab(state);
      let port = await tunnelPort(state);
      if (opts.port !== undefined) {
        port = Number(opts.port);
        if (!/^\d+$/.test(opts.port) || port > 65535)
          throw new LabError({
            code: "INVALID_FLAG",
            what: `--port ${opts.port} is not a TCP port`,
            fix: "give a number from 1 to 65535 (0: any free port)",
          });
      }
      const dialer = labDialer(machines);
      const targets = apiTargets(plan);
      const via = dialer.via(plan.network.vip);
      const tunnel = await startApiTunnel({
        dialer,
        targets,
        listen: { port },
        onEvent: (e) => {
          if (e.type !== "failed") return;
          if (g.json) process.stdout.write(JSON.stringify({ event: "failed", error: e.error }) + "\n");
          else process.stderr.write(`lab tunnel: ${e.error}\n`);
        },
      });
      if (opts.port !== undefined) await state.writeJson("tunnel.json", { port: tunnel.port });
      const server = `https://127.0.0.1:${tunnel.port}`;
      const viaText = via ? `${via.user}@${via.host}:${via.port}` : undefined;
      if (g.json)
        process.stdout.write(
          JSON.stringify({
            lab: state.name,
            port: tunnel.port,
            server,
            targets: targets.map((t) => `${t.host}:${t.port}`),
            via: viaText ?? null,
          }) + "\n",
        );
      else
        process.stdout.write(
          `lab ${state.name}: ${server} -> ${targets.map((t) => `${t.host}:${t.port}`).join(", then ")}` +
            `${viaText ? ` through ${viaText}` : ""}; Ctrl-C stops\n` +
            `  kubectl: lab kubeconfig ${state.name} --merge   (server ${server})\n`,
        );
      await new Promise<void>((resolve) => {
        process.once("SIGINT", resolve);
        process.once("SIGTERM", resolve);
      });
      await tunnel.close();
      await dialer.close();
      if (!g.json) process.stdout.write("lab tunnel: stopped\n");
    });
}
