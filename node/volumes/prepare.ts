/**
 * Everything a container needs from outside its spec before CRI can create it: the pod's
 * ConfigMaps and Secrets, its volumes on disk, the env and mounts. A user error (missing
 * ConfigMap, failed hostPath check) comes back as the reason the container waits.
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
    if (err instanceof PodConfigError)
      return { waiting: { reason: err.reason, message: err.message }, warnings: [] };
    throw err;
  }
}
