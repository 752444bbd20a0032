/**
 * The probers of each pod's running containers: one ContainerProber per running container with
 * probes in the pod's current sandbox, started when it appears and stopped when it is gone.
 */
import type { V1Pod } from "@kubernetes/client-node";
import type { CriClient } from "./cri/client.ts";
import type { ObservedContainer, ObservedPod } from "./observed.ts";
import { currentSandbox } from "./observed.ts";
import type { ProbeResult } from "./pod-status.ts";
import { ContainerProber } from "./probes.ts";

export interface ProberEvents {
  /** A probe result of the pod changed: its status must be recomputed. */
  changed(uid: string): void;
  /** A liveness or startup probe failed for good: the container is to be killed. */
  unhealthy(pod: V1Pod, c: ObservedContainer, which: "liveness" | "startup"): void;
}

export class PodProbers {
  /** Per pod UID, per container ID. */
  private probers = new Map<string, Map<string, ContainerProber>>();
  /** Containers reported unhealthy: not probed again (they are being killed). */
  private unhealthy = new Set<string>();

  constructor(
    private readonly cri: CriClient,
    private readonly events: ProberEvents,
    private readonly probeSecondMs: number,
  ) {}

  /** Brings the pod's probers in line with what runs; a pod that is gone or going loses them all. */
  sync(uid: string, pod: V1Pod | undefined, obs: ObservedPod): void {
    const wanted = new Set<string>();
    const mine = this.probers.get(uid) ?? new Map<string, ContainerProber>();
    const sandbox = currentSandbox(obs);
    if (pod && !pod.metadata?.deletionTimestamp && sandbox) {
      for (const c of obs.containers) {
        if (c.state !== "CONTAINER_RUNNING" || c.sandboxId !== sandbox.id) continue;
        const spec = pod.spec?.containers.find((s) => s.name === c.name);
        if (!spec || !(spec.livenessProbe || spec.readinessProbe || spec.startupProbe)) continue;
        wanted.add(c.id);
        if (mine.has(c.id) || this.unhealthy.has(c.id)) continue;
        const prober = new ContainerProber(
          { containerId: c.id, podIP: sandbox.ip ?? "", container: spec },
          this.cri,
          {
            changed: () => this.events.changed(uid),
            unhealthy: (id, which) => {
              this.unhealthy.add(id);
              this.events.unhealthy(pod, c, which);
            },
          },
          this.probeSecondMs,
        );
        mine.set(c.id, prober);
        prober.start();
      }
    }
    for (const c of obs.containers) if (!wanted.has(c.id)) this.unhealthy.delete(c.id);
    for (const [id, p] of mine) {
      if (!wanted.has(id)) {
        p.stop();
        mine.delete(id);
      }
    }
    if (mine.size) this.probers.set(uid, mine);
    else this.probers.delete(uid);
  }

  /** The container is being removed. */
  stopContainer(id: string): void {
    for (const [uid, mine] of this.probers) {
      mine.get(id)?.stop();
      mine.delete(id);
      if (!mine.size) this.probers.delete(uid);
    }
    this.unhealthy.delete(id);
  }

  results(uid: string): Record<string, ProbeResult> {
    const out: Record<string, ProbeResult> = {};
    for (const [id, p] of this.probers.get(uid) ?? []) out[id] = { ...p.result };
    return out;
  }

  stopAll(): void {
    for (const mine of this.probers.values()) for (const p of mine.values()) p.stop();
    this.probers.clear();
  }
}
