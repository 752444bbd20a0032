/**
 * Registration and heartbeat: the Node object created or merged once, its Lease in
 * kube-node-lease renewed every 10 s, and its status written when Ready changes or at least every
 * 40 s (lastHeartbeatTime). Readiness = containerd answers CRI Status with RuntimeReady and
 * NetworkReady.
 */
import type { V1Lease, V1Node, V1NodeStatus, V1NodeSystemInfo } from "@kubernetes/client-node";
import { readFile } from "node:fs/promises";
import { arch, availableParallelism, release } from "node:os";
import { ApiStatusError } from "../api/client.ts";
import type { FailoverClient } from "./api/failover.ts";
import type { CriClient } from "./cri/client.ts";
import {
  AGENT_VERSION,
  LEASE_NAMESPACE,
  desiredNode,
  nodeArch,
  nodeStatus,
  readyOf,
  renewedLease,
  type NodeRegistration,
  type Readiness,
} from "./node-status.ts";

export const LEASE_RENEW_MS = 10_000;
export const STATUS_REFRESH_MS = 40_000;

const isCode = (err: unknown, code: number): boolean => err instanceof ApiStatusError && err.code === code;

/** "MemTotal:  2013456 kB" → "2013456Ki". */
export function memTotal(meminfo: string): string {
  const m = /^MemTotal:\s+(\d+)\s+kB/m.exec(meminfo);
  if (!m) throw new Error("no MemTotal in /proc/meminfo");
  return `${m[1]}Ki`;
}

export function osImage(osRelease: string): string {
  const m = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(osRelease);
  return m?.[1] ?? "Linux";
}

const readTrim = (path: string): Promise<string> =>
  readFile(path, "utf8").then(
    (s) => s.trim(),
    () => "",
  );

/** What the machine has: capacity from /proc, node info from the OS and the runtime. */
export async function hostFacts(
  cri: CriClient,
  maxPods = 110,
): Promise<Pick<NodeRegistration, "capacity" | "nodeInfo">> {
  const runtime = await cri.version().catch(() => undefined);
  const nodeInfo: V1NodeSystemInfo = {
    architecture: nodeArch(arch()),
    operatingSystem: "linux",
    kernelVersion: release(),
    osImage: osImage(await readTrim("/etc/os-release")),
    machineID: await readTrim("/etc/machine-id"),
    systemUUID: await readTrim("/sys/class/dmi/id/product_uuid"),
    bootID: await readTrim("/proc/sys/kernel/random/boot_id"),
    containerRuntimeVersion: runtime ? `${runtime.runtimeName}://${runtime.runtimeVersion}` : "unknown",
    kubeletVersion: AGENT_VERSION,
    kubeProxyVersion: AGENT_VERSION,
  };
  return {
    capacity: {
      cpu: String(availableParallelism()),
      memory: memTotal(await readFile("/proc/meminfo", "utf8")),
      pods: String(maxPods),
    },
    nodeInfo,
  };
}

export async function runtimeReadiness(cri: CriClient): Promise<Readiness> {
  try {
    const conds = await cri.status();
    const bad = ["RuntimeReady", "NetworkReady"].filter((t) => !conds.find((c) => c.type === t)?.status);
    if (bad.length === 0)
      return { ready: true, reason: "AgentReady", message: "lab-agent is posting ready status" };
    const why = bad
      .map((t) => {
        const c = conds.find((x) => x.type === t);
        return `${t}=false${c?.reason ? ` reason:${c.reason}` : ""}${c?.message ? ` message:${c.message}` : ""}`;
      })
      .join("; ");
    return { ready: false, reason: "AgentNotReady", message: `container runtime not ready: ${why}` };
  } catch (err) {
    return {
      ready: false,
      reason: "AgentNotReady",
      message: `container runtime is down: ${(err as Error).message}`,
    };
  }
}

export interface HeartbeatOptions {
  client: FailoverClient;
  cri: CriClient;
  registration: NodeRegistration;
  onError?(what: string, err: unknown): void;
  leaseRenewMs?: number;
  statusRefreshMs?: number;
}

/** Conflicts in a row register() merges again before it gives up (the caller's wait retries). */
const MAX_REGISTER_CONFLICTS = 5;

export class Heartbeat {
  private timer: NodeJS.Timeout | undefined;
  private lease: V1Lease | undefined;
  private status: V1NodeStatus | undefined;
  private statusAt = 0;
  private running = false;
  private tick: Promise<void> = Promise.resolve();

  constructor(private readonly o: HeartbeatOptions) {}

  /** Creates or merges the Node and writes its first status. Throws when the API is unreachable. */
  async register(): Promise<V1Node> {
    const { client, registration: reg } = this.o;
    // A conflict means someone else wrote the Node in between; a few in a row is not a race.
    for (let conflicts = 0; ; conflicts++) {
      const existing = await client.get("nodes", reg.nodeName).catch((err: unknown) => {
        if (isCode(err, 404)) return undefined;
        throw err;
      });
      try {
        const node = existing
          ? await client.update("nodes", desiredNode(reg, existing))
          : await client.create("nodes", desiredNode(reg));
        this.status = node.status;
        await this.writeStatus(await runtimeReadiness(this.o.cri));
        return node;
      } catch (err) {
        // someone else wrote the Node in between (IPAM, a second agent start): merge again
        if (isCode(err, 409) && conflicts < MAX_REGISTER_CONFLICTS) continue;
        throw err;
      }
    }
  }

  start(): void {
    this.running = true;
    const loop = (): void => {
      if (!this.running) return;
      this.tick = this.beat().finally(() => {
        if (this.running) this.timer = setTimeout(loop, this.o.leaseRenewMs ?? LEASE_RENEW_MS);
      });
    };
    loop();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    await this.tick;
  }

  /** One heartbeat: renew the Lease; write status if Ready changed or it is due. */
  async beat(): Promise<void> {
    await this.renewLease().catch((err: unknown) => this.o.onError?.("renewing lease", err));
    const readiness = await runtimeReadiness(this.o.cri);
    const due = Date.now() - this.statusAt >= (this.o.statusRefreshMs ?? STATUS_REFRESH_MS);
    const next = nodeStatus(this.o.registration, readiness, new Date(), this.status);
    if (due || readyOf(next) !== readyOf(this.status))
      await this.writeStatus(readiness).catch((err: unknown) =>
        this.o.onError?.("updating node status", err),
      );
  }

  private async writeStatus(readiness: Readiness): Promise<void> {
    const reg = this.o.registration;
    const status = nodeStatus(reg, readiness, new Date(), this.status);
    // no resourceVersion: the status is ours alone, a plain overwrite
    const node = await this.o.client.updateStatus("nodes", {
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: reg.nodeName },
      status,
    });
    this.status = node.status ?? status;
    this.statusAt = Date.now();
  }

  private async renewLease(): Promise<void> {
    const { client, registration: reg } = this.o;
    const now = new Date();
    if (!this.lease) {
      this.lease = await client.get("leases", reg.nodeName, LEASE_NAMESPACE).catch((err: unknown) => {
        if (isCode(err, 404)) return undefined;
        throw err;
      });
    }
    try {
      this.lease = this.lease
        ? await client.update("leases", renewedLease(reg.nodeName, now, this.lease))
        : await client.create("leases", renewedLease(reg.nodeName, now));
    } catch (err) {
      this.lease = undefined; // gone or changed: read it again
      // A conflict usually means our previous renewal landed after the client gave up on it:
      // read the lease and renew once more now, not a whole period later (on a slow API a
      // skipped renewal brings the node close to the controller's grace period).
      if (!isCode(err, 409)) throw err;
      const fresh = await client.get("leases", reg.nodeName, LEASE_NAMESPACE);
      this.lease = await client.update("leases", renewedLease(reg.nodeName, new Date(), fresh));
    }
  }
}
