/**
 * Resource usage of this node and its containers, for lab-server's metrics.k8s.io (which asks
 * the agent's /stats/summary, as metrics-server asks the kubelet). Containers' cumulative CPU
 * time and memory working set come from the runtime (CRI ListContainerStats, which containerd
 * reads from each container's cgroup, v1 or v2); the node's from /proc/stat and /proc/meminfo.
 * CPU usage in nanocores is the delta of the cumulative figures between two samples, so the
 * sampler keeps the previous one; a container seen once has no rate yet and is left out.
 */
import { readFile } from "node:fs/promises";
import { rateNanoCores, type PodStats, type Summary } from "../api/metrics.ts";
import type { CriClient } from "./cri/client.ts";
import { CONTAINER_NAME, MANAGED_BY, MANAGED_BY_AGENT, POD_NAME, POD_NAMESPACE, POD_UID } from "./labels.ts";

/** USER_HZ: /proc/stat counts in 1/100 s on Linux. */
const NS_PER_TICK = 1e7;

interface Reading {
  usageCoreNanoSeconds: number;
  atMs: number;
}

/** The node's busy CPU time from /proc/stat's first line (everything but idle and iowait), in ns. Pure. */
export function procStatBusyNs(text: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith("cpu "));
  if (!line) return undefined;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  if (f.length < 4 || f.some((x) => !Number.isFinite(x))) return undefined;
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
  return (user + nice + system + irq + softirq + steal) * NS_PER_TICK;
}

/** MemTotal − MemAvailable from /proc/meminfo, in bytes (the node's working set). Pure. */
export function meminfoWorkingSet(text: string): number | undefined {
  const kb = (k: string): number | undefined => {
    const m = new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(text);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  const total = kb("MemTotal");
  const avail = kb("MemAvailable");
  return total !== undefined && avail !== undefined ? total - avail : undefined;
}

export interface StatsSamplerOptions {
  cri: Pick<CriClient, "listContainerStats">;
  nodeName: string;
  intervalMs?: number;
  procRoot?: string;
  onError?: (err: unknown) => void;
}

export class StatsSampler {
  private prevNode: Reading | undefined;
  private node = { nanoCores: 0, workingSet: 0, atMs: 0 };
  private prev = new Map<string, Reading>();
  private pods: PodStats[] = [];

  constructor(private readonly o: StatsSamplerOptions) {}

  /** Samples now, then every intervalMs, until the signal aborts. The second sample comes after 1 s. */
  async run(signal: AbortSignal): Promise<void> {
    let wait = 1000;
    while (!signal.aborted) {
      await this.sample().catch((err: unknown) => this.o.onError?.(err));
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        signal.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
      });
      wait = this.o.intervalMs ?? 10_000;
    }
  }

  async sample(): Promise<void> {
    const proc = this.o.procRoot ?? "/proc";
    const now = Date.now();
    const [stat, mem] = await Promise.all([
      readFile(`${proc}/stat`, "utf8").catch(() => ""),
      readFile(`${proc}/meminfo`, "utf8").catch(() => ""),
    ]);
    const busy = procStatBusyNs(stat);
    if (busy !== undefined) {
      const cur = { usageCoreNanoSeconds: busy, atMs: now };
      const rate = rateNanoCores(this.prevNode, cur);
      this.prevNode = cur;
      if (rate !== undefined) this.node = { ...this.node, nanoCores: rate, atMs: now };
    }
    this.node.workingSet = meminfoWorkingSet(mem) ?? this.node.workingSet;
    const stats = await this.o.cri.listContainerStats({ [MANAGED_BY]: MANAGED_BY_AGENT });
    const next = new Map<string, Reading>();
    // the newest attempt of each (pod, container)
    const best = new Map<string, { labels: Record<string, string>; rate: number; ws: number; at: number }>();
    for (const s of stats) {
      const id = s.attributes?.id;
      const labels = s.attributes?.labels ?? {};
      const cum = s.cpu?.usageCoreNanoSeconds?.value;
      if (!id || cum === undefined || !labels[POD_UID] || !labels[CONTAINER_NAME]) continue;
      const at = s.cpu?.timestamp ? s.cpu.timestamp / 1e6 : now;
      const cur = { usageCoreNanoSeconds: cum, atMs: at };
      next.set(id, cur);
      const rate = rateNanoCores(this.prev.get(id), cur);
      if (rate === undefined) continue;
      const key = `${labels[POD_UID]}/${labels[CONTAINER_NAME]}`;
      const old = best.get(key);
      if (!old || old.at < at) best.set(key, { labels, rate, ws: s.memory?.workingSetBytes?.value ?? 0, at });
    }
    this.prev = next;
    const pods = new Map<string, PodStats>();
    for (const c of best.values()) {
      const uid = c.labels[POD_UID]!;
      let p = pods.get(uid);
      if (!p) {
        p = {
          podRef: { uid, name: c.labels[POD_NAME] ?? "", namespace: c.labels[POD_NAMESPACE] ?? "" },
          containers: [],
        };
        pods.set(uid, p);
      }
      const time = new Date(c.at).toISOString();
      p.containers.push({
        name: c.labels[CONTAINER_NAME]!,
        cpu: { time, usageNanoCores: c.rate },
        memory: { time, workingSetBytes: c.ws },
      });
    }
    this.pods = [...pods.values()];
  }

  summary(): Summary {
    const time = new Date(this.node.atMs || Date.now()).toISOString();
    return {
      node: {
        nodeName: this.o.nodeName,
        cpu: {
          time,
          usageNanoCores: this.node.nanoCores,
          ...(this.prevNode ? { usageCoreNanoSeconds: this.prevNode.usageCoreNanoSeconds } : {}),
        },
        memory: { time, workingSetBytes: this.node.workingSet },
      },
      pods: this.pods,
    };
  }
}
