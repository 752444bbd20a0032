/**
 * Everything a container needs from outside its spec before CRI can create it: the pod's
 * ConfigMaps and Secrets, its volumes on disk, the env and mounts. A user error (missing
 * ConfigMap, failed hostPath check) comes back as the reason the container waits; one in a volume
 * also goes to the API as a FailedMount event.
 */
import type { V1Container, V1Pod, V1Service } from "@kubernetes/client-node";
import type { PodRuntimeFacts } from "../container-config.ts";
import { containerConfig } from "../container-config.ts";
import type { ContainerConfig } from "../cri/types.ts";
import type { ObjectSource, VolumeManager } from "./manager.ts";
import { fetchPodObjects } from "./manager.ts";
import { PodConfigError } from "./plan.ts";

export interface PreparedContainer {
  config?: ContainerConfig;
  waiting?: { reason: string; message: string };
  warnings: string[];
}

export async function prepareContainer(
  pod: V1Pod,
  spec: V1Container,
  attempt: number,
  services: V1Service[],
  facts: PodRuntimeFacts,
  deps: { volumes: VolumeManager; objects?: ObjectSource },
): Promise<PreparedContainer> {
  try {
    const objects = await fetchPodObjects(deps.objects, pod);
    const volumes = await deps.volumes.setUp(pod, objects);
    const config = containerConfig(pod, spec, attempt, services, facts, objects, volumes);
    await deps.volumes.ensureMountSources(pod.metadata?.uid ?? "", config.mounts ?? []);
    return { config, warnings: volumes.warnings };
  } catch (err) {
    if (!(err instanceof PodConfigError)) throw err;
    if (err.reason === MOUNT_WAIT) {
      // The kubelet's way: the container shows only ContainerCreating, the why is a FailedMount
      // event; the next sync tries again and starts it once the volume can be set up.
      await deps.objects?.mountFailed?.(pod, err.message);
      return { waiting: { reason: MOUNT_WAIT, message: "" }, warnings: [] };
    }
    return { waiting: { reason: err.reason, message: err.message }, warnings: [] };
  }
}

/** The waiting reason of a container whose pod volumes cannot be set up yet. */
const MOUNT_WAIT = "ContainerCreating";

/** True when the pod has volumes whose files come from API objects or tokens (worth refreshing). */
export function hasObjectVolumes(pod: V1Pod): boolean {
  return (pod.spec?.volumes ?? []).some(
    (v) =>
      v.configMap ||
      v.secret ||
      v.projected?.sources?.some((s) => s.configMap || s.secret || s.serviceAccountToken),
  );
}

/**
 * Keeps ConfigMap/Secret volume files of running pods current, like the kubelet's periodic
 * volume sync: at most one GET round per pod every `periodMs`. Files mounted by subPath keep
 * their old content (a bind mount of the replaced file), as with the kubelet.
 */
export class VolumeRefresher {
  private last = new Map<string, number>();
  private inFlight = new Set<string>();

  constructor(
    private readonly deps: { volumes: VolumeManager; objects?: ObjectSource },
    private readonly periodMs: number,
    private readonly onError: (uid: string, err: Error) => void,
  ) {}

  maybeRefresh(pod: V1Pod, now = Date.now()): void {
    const uid = pod.metadata?.uid ?? "";
    if (!uid || !this.deps.objects || !hasObjectVolumes(pod) || this.inFlight.has(uid)) return;
    const last = this.last.get(uid);
    // the first sight only starts the clock: the container start just wrote the files
    if (last === undefined) {
      this.last.set(uid, now);
      return;
    }
    if (now - last < this.periodMs) return;
    this.last.set(uid, now);
    this.inFlight.add(uid);
    void (async () => {
      const objects = await fetchPodObjects(this.deps.objects, pod);
      await this.deps.volumes.refreshFiles(pod, objects);
    })()
      .catch((err: Error) => {
        // a missing object keeps the last files, as the kubelet does
        if (!(err instanceof PodConfigError)) this.onError(uid, err);
      })
      .finally(() => this.inFlight.delete(uid));
  }

  forget(uid: string): void {
    this.last.delete(uid);
  }
}
