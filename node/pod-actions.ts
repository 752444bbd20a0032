/**
 * The CRI side of a pod reconcile: runs one planned action (sandbox, image, volumes, container,
 * teardown) and keeps why a container is waiting (image, config and volume errors) for its status.
 */
import type { V1Pod, V1Service } from "@kubernetes/client-node";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { removePodCgroup } from "./cgroups.ts";
import type { SandboxOptions } from "./container-config.ts";
import { sandboxConfig } from "./container-config.ts";
import type { CriClient } from "./cri/client.ts";
import { isNotFound } from "./cri/client.ts";
import type { ObservedPod } from "./observed.ts";
import type { PodAction } from "./reconcile.ts";
import type { ObjectSource, VolumeManager } from "./volumes/manager.ts";
import { prepareContainer } from "./volumes/prepare.ts";

export type Waiting = { reason: string; message: string };

export interface PodActionsDeps {
  cri: CriClient;
  volumes: VolumeManager;
  objects?: ObjectSource;
  sandbox: SandboxOptions;
  nodeName: string;
  hostIP?: string;
  /** Services, for the *_SERVICE_HOST/_PORT variables of containers started now. */
  services: () => V1Service[];
  /** A container or a pod's volumes are gone: whatever watched them stops. */
  removed: (what: { containerId: string } | { sandboxId: string } | { volumesOf: string }) => void;
  error: (uid: string, message: string) => void;
}

export class PodActions {
  private waiting = new Map<string, Record<string, Waiting>>();
  private volumeWarnings = new Map<string, string[]>();

  constructor(private readonly d: PodActionsDeps) {}

  waitingOf(uid: string): Record<string, Waiting> {
    return this.waiting.get(uid) ?? {};
  }

  warningsOf(uid: string): string[] {
    return this.volumeWarnings.get(uid) ?? [];
  }

  /** The pod is gone from the desired set: nothing of it is kept. */
  forget(uid: string): void {
    this.waiting.delete(uid);
    this.volumeWarnings.delete(uid);
  }

  /** Runs one action; false when it could not make progress (e.g. the image cannot be pulled). */
  async execute(
    pod: V1Pod | undefined,
    obs: ObservedPod | undefined,
    action: PodAction,
  ): Promise<boolean | void> {
    const cri = this.d.cri;
    const ignoreGone = (err: unknown): void => {
      if (!isNotFound(err)) throw err;
    };
    switch (action.kind) {
      case "runSandbox": {
        const cfg = sandboxConfig(pod!, action.attempt, this.d.sandbox);
        await mkdir(cfg.logDirectory, { recursive: true });
        await cri.runPodSandbox(cfg);
        return;
      }
      case "createContainer":
        return this.createContainer(pod!, obs!, action);
      case "startCreated":
        await cri.startContainer(action.id);
        return;
      case "stopContainer":
        await cri.stopContainer(action.id, action.graceSeconds).catch(ignoreGone);
        return;
      case "removeContainer":
        this.d.removed({ containerId: action.id });
        await cri.removeContainer(action.id).catch(ignoreGone);
        return;
      case "stopSandbox":
        await cri.stopPodSandbox(action.id).catch(ignoreGone);
        return;
      case "removeSandbox":
        await cri.removePodSandbox(action.id).catch(ignoreGone);
        this.d.removed({ sandboxId: action.id });
        return;
      case "removePodCgroup": {
        const left = await removePodCgroup(this.d.sandbox.cgroupRoot, action.uid);
        if (left.length) this.d.error(action.uid, `cgroups left: ${left.join(", ")}`);
        return;
      }
      case "removePodVolumes":
        await this.d.volumes.tearDown(action.uid);
        this.volumeWarnings.delete(action.uid);
        this.d.removed({ volumesOf: action.uid });
        return;
    }
  }

  private setWaiting(uid: string, name: string, w: Waiting | undefined): void {
    const m = this.waiting.get(uid) ?? {};
    if (w) m[name] = w;
    else delete m[name];
    this.waiting.set(uid, m);
  }

  private async createContainer(
    pod: V1Pod,
    obs: ObservedPod,
    action: Extract<PodAction, { kind: "createContainer" }>,
  ): Promise<boolean> {
    const cri = this.d.cri;
    const uid = pod.metadata!.uid!;
    const spec = [...(pod.spec!.initContainers ?? []), ...pod.spec!.containers].find(
      (c) => c.name === action.name,
    )!;
    const image = spec.image ?? "";
    const sandbox = obs.sandboxes.find((s) => s.id === action.sandboxId)!;
    // image present? pull unless the policy forbids it
    if (!(await cri.imageStatus(image))) {
      if (spec.imagePullPolicy === "Never") {
        this.setWaiting(uid, spec.name, {
          reason: "ErrImageNeverPull",
          message: `image "${image}" is not present with pull policy of Never`,
        });
        return false;
      }
      try {
        await cri.pullImage(image);
      } catch (err) {
        this.setWaiting(uid, spec.name, { reason: "ErrImagePull", message: (err as Error).message });
        return false;
      }
    }
    const sbCfg = sandboxConfig(pod, sandbox.attempt, this.d.sandbox);
    const facts = {
      podIP: sandbox.ip ?? "",
      nodeName: this.d.nodeName,
      ...(this.d.hostIP ? { hostIP: this.d.hostIP } : {}),
    };
    // volumes, ConfigMaps/Secrets and env: a user error leaves the container waiting, like kubelet
    const prepared = await prepareContainer(pod, spec, action.attempt, this.d.services(), facts, {
      volumes: this.d.volumes,
      ...(this.d.objects ? { objects: this.d.objects } : {}),
    });
    if (prepared.waiting) {
      this.setWaiting(uid, spec.name, prepared.waiting);
      return false;
    }
    if (prepared.warnings.length) this.volumeWarnings.set(uid, prepared.warnings);
    const cfg = prepared.config!;
    await mkdir(join(sbCfg.logDirectory, spec.name), { recursive: true });
    let id: string;
    try {
      id = await cri.createContainer(action.sandboxId, cfg, sbCfg);
    } catch (err) {
      this.setWaiting(uid, spec.name, { reason: "CreateContainerError", message: (err as Error).message });
      throw err;
    }
    this.setWaiting(uid, spec.name, undefined);
    // a start failure leaves the container exited (StartError): the restart policy takes it from there
    await cri
      .startContainer(id)
      .catch((err: Error) => this.d.error(uid, `start ${spec.name}: ${err.message}`));
    return true;
  }
}
