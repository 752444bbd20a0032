/**
 * What the runtime has of the pods this agent made, read from CRI and grouped by pod UID: the
 * actual state every pod reconcile starts from. Like kubelet's PLEG it asks `ContainerStatus` only
 * for containers whose listed state changed, and a sandbox's IP once.
 */
import type { CriClient } from "./cri/client.ts";
import type { ContainerStatus } from "./cri/types.ts";
import { GRACE_PERIOD, MANAGED_BY, MANAGED_BY_AGENT, POD_UID } from "./labels.ts";
import type { ObservedContainer, ObservedPod, ObservedSandbox } from "./observed.ts";
import { nsToMs, statusStillValid } from "./observed.ts";
import { applyOomKills, KernelOomLog } from "./oom.ts";

const MANAGED = { [MANAGED_BY]: MANAGED_BY_AGENT };

export const noPod = (uid: string): ObservedPod => ({ uid, sandboxes: [], containers: [] });

export class PodObserver {
  private sandboxIPs = new Map<string, string>();
  /** Last CRI ContainerStatus per container, reused while the listed state says it cannot differ. */
  private containerStatuses = new Map<string, ContainerStatus>();
  readonly oom = new KernelOomLog();

  constructor(private readonly cri: CriClient) {}

  /** Every pod of this agent the runtime has. */
  all(): Promise<Map<string, ObservedPod>> {
    return this.observe(MANAGED);
  }

  /** One pod (empty when the runtime has nothing of it). */
  async pod(uid: string): Promise<ObservedPod> {
    return (await this.observe({ ...MANAGED, [POD_UID]: uid })).get(uid) ?? noPod(uid);
  }

  /** The sandbox was removed: its IP is no longer needed. */
  forgetSandbox(id: string): void {
    this.sandboxIPs.delete(id);
  }

  close(): void {
    this.oom.close();
  }

  private async observe(selector: Record<string, string>): Promise<Map<string, ObservedPod>> {
    const cri = this.cri;
    const [sandboxes, containers] = await Promise.all([
      cri.listPodSandbox(selector),
      cri.listContainers({ labelSelector: selector }),
    ]);
    const pods = new Map<string, ObservedPod>();
    const get = (uid: string): ObservedPod => {
      let p = pods.get(uid);
      if (!p) pods.set(uid, (p = noPod(uid)));
      return p;
    };
    for (const s of sandboxes) {
      const uid = s.labels[POD_UID] ?? s.metadata.uid;
      let ip = this.sandboxIPs.get(s.id);
      if (ip === undefined && s.state === "SANDBOX_READY") {
        const st = await cri.podSandboxStatus(s.id).catch(() => undefined);
        ip = st?.network?.ip ?? "";
        this.sandboxIPs.set(s.id, ip);
      }
      const grace = Number(s.annotations[GRACE_PERIOD]);
      const o: ObservedSandbox = {
        id: s.id,
        attempt: s.metadata.attempt,
        state: s.state,
        createdAt: nsToMs(s.createdAt),
        name: s.metadata.name,
        namespace: s.metadata.namespace,
        ...(ip ? { ip } : {}),
        ...(Number.isFinite(grace) ? { graceSeconds: grace } : {}),
      };
      get(uid).sandboxes.push(o);
    }
    const statuses = await Promise.all(
      containers.map((c) => {
        const known = this.containerStatuses.get(c.id);
        if (known && statusStillValid(known, c.state, Date.now())) return known;
        return cri.containerStatus(c.id).then(
          (st) => (this.containerStatuses.set(c.id, st), st),
          () => undefined,
        );
      }),
    );
    if (selector === MANAGED) {
      // a full listing: forget containers that are gone
      const listed = new Set(containers.map((c) => c.id));
      for (const id of this.containerStatuses.keys()) if (!listed.has(id)) this.containerStatuses.delete(id);
    }
    containers.forEach((c, i) => {
      const st = statuses[i];
      if (!st) return;
      const uid = c.labels[POD_UID] ?? "";
      const grace = Number(c.annotations[GRACE_PERIOD]);
      const o: ObservedContainer = {
        id: c.id,
        sandboxId: c.podSandboxId,
        name: c.metadata.name,
        attempt: c.metadata.attempt,
        state: st.state,
        createdAt: nsToMs(st.createdAt),
        startedAt: nsToMs(st.startedAt),
        finishedAt: nsToMs(st.finishedAt),
        exitCode: st.exitCode,
        reason: st.reason,
        message: st.message,
        image: st.image?.image ?? "",
        imageRef: st.imageRef,
        ...(Number.isFinite(grace) ? { graceSeconds: grace } : {}),
      };
      get(uid).containers.push(o);
    });
    applyOomKills(pods, this.oom);
    return pods;
  }
}
