/**
 * The lab's API on a local port (`lab tunnel`): a TCP listener on 127.0.0.1 whose connections are
 * forwarded, through the lab dialer (the hypervisor's SSH jump), to the first API endpoint that
 * accepts them: the VIP, else each master in turn. TLS stays end to end between the client and
 * lab-server (the apiserver certificate carries 127.0.0.1), so the tunnel sees only bytes.
 */
import { createHash } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { LabError } from "../topology/errors.ts";
import type { LabDialer } from "../ssh/dialer.ts";

export interface TunnelTarget {
  host: string;
  port: number;
}

/** Where the API answers, in the order a client should try: the VIP, then every master. Pure. */
export function apiTargets(plan: {
  network: { vip: string };
  cluster: { apiServerPort: number };
  masters: { address: string }[];
}): TunnelTarget[] {
  const port = plan.cluster.apiServerPort;
  const hosts = [...new Set([plan.network.vip, ...plan.masters.map((m) => m.address)])];
  return hosts.map((host) => ({ host, port }));
}

/** The lab's default local tunnel port: stable per lab name (so a merged kubeconfig stays valid), 16443–17442. Pure. */
export function defaultTunnelPort(lab: string): number {
  return 16443 + (createHash("sha256").update(lab).digest().readUInt16BE(0) % 1000);
}

export type TunnelEvent =
  { type: "connected"; target: string; ms: number } | { type: "failed"; error: string };

export interface ApiTunnel {
  /** The local port it listens on (the one asked for, or the one the OS chose for 0). */
  port: number;
  host: string;
  close(): Promise<void>;
}

/** Starts listening; every accepted connection is forwarded to the first target that accepts it. */
export async function startApiTunnel(opts: {
  dialer: LabDialer;
  targets: TunnelTarget[];
  listen: { host?: string; port: number };
  /** Per target attempt; a dead VIP must not stall every connection for long. */
  dialTimeoutMs?: number;
  onEvent?: (e: TunnelEvent) => void;
}): Promise<ApiTunnel> {
  const host = opts.listen.host ?? "127.0.0.1";
  const open = new Set<Socket>();
  // The target that worked last is tried first, so a dead VIP costs one failed attempt, not one per request.
  let preferred = 0;

  async function dialFirst(): Promise<{ stream: Duplex; target: string }> {
    const errors: string[] = [];
    for (let i = 0; i < opts.targets.length; i++) {
      const idx = (preferred + i) % opts.targets.length;
      const t = opts.targets[idx]!;
      try {
        const stream = await opts.dialer.connect(t.host, t.port, { timeoutMs: opts.dialTimeoutMs ?? 10_000 });
        preferred = idx;
        return { stream, target: `${t.host}:${t.port}` };
      } catch (err) {
        errors.push(err instanceof LabError ? err.what : (err as Error).message);
      }
    }
    throw new Error(`no API endpoint answered: ${errors.join("; ")}`);
  }

  const server: Server = createServer({ pauseOnConnect: true }, (client) => {
    open.add(client);
    client.on("close", () => open.delete(client));
    client.on("error", () => client.destroy());
    const started = Date.now();
    dialFirst().then(
      ({ stream, target }) => {
        if (client.destroyed) return void stream.destroy();
        opts.onEvent?.({ type: "connected", target, ms: Date.now() - started });
        stream.on("error", () => client.destroy());
        stream.on("close", () => client.destroy());
        client.on("close", () => stream.destroy());
        client.pipe(stream);
        stream.pipe(client);
        client.resume();
      },
      (err: Error) => {
        opts.onEvent?.({ type: "failed", error: err.message });
        client.destroy();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        err.code === "EADDRINUSE"
          ? new LabError({
              code: "TUNNEL_PORT_IN_USE",
              what: `${host}:${opts.listen.port} is already in use (another \`lab tunnel\` for this lab?)`,
              fix: "stop the other tunnel, or pick another port with `lab tunnel --port N` (then `lab kubeconfig` again)",
              source: "host",
            })
          : err,
      ),
    );
    server.listen(opts.listen.port, host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    port,
    host,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}
