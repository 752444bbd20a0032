/** Liveness, readiness and startup probes (httpGet, tcpSocket, exec via CRI ExecSync) with thresholds. */
import type { V1Container, V1Probe } from "@kubernetes/client-node";
import { request } from "node:http";
import { connect } from "node:net";
import type { CriClient } from "./cri/client.ts";
import type { ProbeResult } from "./pod-status.ts";

export interface ProbeTarget {
  containerId: string;
  podIP: string;
  container: V1Container;
}

function resolvePort(port: number | string | undefined, c: V1Container): number {
  if (typeof port === "number") return port;
  if (port && /^\d+$/.test(port)) return Number(port);
  const named = c.ports?.find((p) => p.name === port);
  return named?.containerPort ?? 0;
}

function httpProbe(p: NonNullable<V1Probe["httpGet"]>, t: ProbeTarget, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const headers: Record<string, string> = { "User-Agent": "lab-agent-probe" };
    for (const h of p.httpHeaders ?? []) headers[h.name] = h.value;
    const req = request(
      {
        host: p.host || t.podIP,
        port: resolvePort(p.port as number | string, t.container),
        path: p.path ?? "/",
        method: "GET",
        headers,
        timeout: timeoutMs,
      },
      (res) => {
        res.resume();
        const code = res.statusCode ?? 0;
        resolve(code >= 200 && code < 400);
      },
    );
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(false));
    req.end();
  });
}

function tcpProbe(p: NonNullable<V1Probe["tcpSocket"]>, t: ProbeTarget, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({
      host: p.host || t.podIP,
      port: resolvePort(p.port as number | string, t.container),
    });
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.on("connect", () => done(true));
    sock.on("error", () => done(false));
  });
}

/** One probe run: true on success. */
export async function runProbe(p: V1Probe, t: ProbeTarget, cri: CriClient): Promise<boolean> {
  const timeoutSeconds = p.timeoutSeconds ?? 1;
  if (p.httpGet) return httpProbe(p.httpGet, t, timeoutSeconds * 1000);
  if (p.tcpSocket) return tcpProbe(p.tcpSocket, t, timeoutSeconds * 1000);
  if (p.exec) {
    try {
      const r = await cri.execSync(t.containerId, p.exec.command ?? [], timeoutSeconds);
      return r.exitCode === 0;
    } catch {
      return false;
    }
  }
  return true;
}

export interface ProbeEvents {
  /** A probe result changed (ready or started): status must be recomputed. */
  changed(containerId: string): void;
  /** Liveness or startup probe failed failureThreshold times: the container must be restarted. */
  unhealthy(containerId: string, which: "liveness" | "startup"): void;
}

/** The probe workers of one running container. Stops itself after reporting it unhealthy. */
export class ContainerProber {
  readonly result: ProbeResult = {};
  private timers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(
    private readonly target: ProbeTarget,
    private readonly cri: CriClient,
    private readonly events: ProbeEvents,
    /** Milliseconds per probe second; tests shrink it. */
    private readonly secondMs = 1000,
  ) {}

  start(): void {
    const c = this.target.container;
    if (c.startupProbe) this.loop("startup", c.startupProbe);
    else this.afterStarted();
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  private afterStarted(): void {
    const c = this.target.container;
    if (c.readinessProbe) this.loop("readiness", c.readinessProbe);
    if (c.livenessProbe) this.loop("liveness", c.livenessProbe);
  }

  private later(ms: number, fn: () => void): void {
    if (this.stopped) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.stopped) fn();
    }, ms);
    t.unref();
    this.timers.add(t);
  }

  private loop(which: "startup" | "readiness" | "liveness", p: V1Probe): void {
    const period = (p.periodSeconds ?? 10) * this.secondMs;
    const successThreshold = which === "readiness" ? (p.successThreshold ?? 1) : 1;
    const failureThreshold = p.failureThreshold ?? 3;
    let successes = 0;
    let failures = 0;
    const tick = async (): Promise<void> => {
      const ok = await runProbe(p, this.target, this.cri);
      if (this.stopped) return;
      if (ok) {
        successes++;
        failures = 0;
      } else {
        failures++;
        successes = 0;
      }
      const id = this.target.containerId;
      if (which === "startup") {
        if (ok) {
          this.result.started = true;
          this.events.changed(id);
          this.afterStarted();
          return;
        }
        if (failures >= failureThreshold) return this.unhealthy("startup");
      } else if (which === "readiness") {
        const before = this.result.ready;
        if (successes >= successThreshold) this.result.ready = true;
        if (failures >= failureThreshold || (before === undefined && !ok)) this.result.ready = false;
        if (before !== this.result.ready) this.events.changed(id);
      } else if (failures >= failureThreshold) {
        return this.unhealthy("liveness");
      }
      this.later(period, () => void tick());
    };
    this.later((p.initialDelaySeconds ?? 0) * this.secondMs, () => void tick());
  }

  private unhealthy(which: "liveness" | "startup"): void {
    this.stop();
    this.events.unhealthy(this.target.containerId, which);
  }
}
