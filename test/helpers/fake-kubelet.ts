/**
 * The node side of a control-loop test without an agent: fake Nodes whose Leases it renews, whose
 * bound pods it reports Running and Ready, and whose graceful pod deletions it finishes. A node
 * marked dead is left alone, as if its machine had stopped.
 */
import type { V1Lease, V1Node, V1Pod } from "@kubernetes/client-node";
import type { LabClient } from "../../api/client.ts";
import { microTime, timestamp } from "../../lib/time.ts";

const ready = (p: V1Pod): boolean =>
  !!p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");

export class FakeKubelet {
  readonly dead = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private client: LabClient,
    readonly nodes: string[],
  ) {}

  /** Switch to another API server (e.g. after the first one was killed). */
  use(client: LabClient): void {
    this.client = client;
  }

  async register(): Promise<void> {
    for (const [i, name] of this.nodes.entries()) {
      const node: V1Node = {
        apiVersion: "v1",
        kind: "Node",
        metadata: { name, labels: { "kubernetes.io/hostname": name } },
        spec: {},
      };
      await this.client.create("nodes", node);
      const t = timestamp() as unknown as Date;
      // Controllers (IPAM, node lifecycle) may write the node meanwhile: retry on conflict.
      for (let attempt = 0; ; attempt++) {
        const current = await this.client.get("nodes", name);
        try {
          await this.client.updateStatus("nodes", {
            ...current,
            status: {
              capacity: { cpu: "4", memory: "8Gi", pods: "110" },
              allocatable: { cpu: "4", memory: "8Gi", pods: "110" },
              conditions: [
                {
                  type: "Ready",
                  status: "True",
                  reason: "KubeletReady",
                  lastHeartbeatTime: t,
                  lastTransitionTime: t,
                },
              ],
              addresses: [{ type: "InternalIP", address: `192.168.50.${i + 10}` }],
            },
          });
          break;
        } catch (err) {
          if ((err as { code?: number }).code !== 409 || attempt > 10) throw err;
        }
      }
      const lease: V1Lease = {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name, namespace: "kube-node-lease" },
        spec: {
          holderIdentity: name,
          leaseDurationSeconds: 40,
          renewTime: microTime(Date.now()) as unknown as Date,
        },
      };
      await this.client.create("leases", lease);
    }
  }

  start(periodMs = 300): void {
    let busy = false;
    this.timer = setInterval(() => {
      if (busy) return;
      busy = true;
      this.round()
        .catch(() => undefined)
        .finally(() => (busy = false));
    }, periodMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async round(): Promise<void> {
    const now = microTime(Date.now()) as unknown as Date;
    for (const n of this.nodes) {
      if (this.dead.has(n)) continue;
      const lease = await this.client.get("leases", n, "kube-node-lease");
      await this.client
        .update("leases", { ...lease, spec: { ...lease.spec, renewTime: now } })
        .catch(() => undefined);
      // Back from the dead (or marked Unknown by the node controller): report Ready again.
      const node = await this.client.get("nodes", n);
      if (!node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")) {
        const t = timestamp() as unknown as Date;
        const conditions = [
          ...(node.status?.conditions ?? []).filter((c) => c.type !== "Ready"),
          {
            type: "Ready",
            status: "True",
            reason: "KubeletReady",
            lastHeartbeatTime: t,
            lastTransitionTime: t,
          },
        ];
        await this.client
          .updateStatus("nodes", { ...node, status: { ...node.status, conditions } })
          .catch(() => undefined);
      }
    }
    for (const p of (await this.client.list("pods")).items) {
      const node = p.spec?.nodeName;
      if (!node || this.dead.has(node) || !this.nodes.includes(node)) continue;
      if (p.metadata?.deletionTimestamp) {
        await this.client
          .delete("pods", p.metadata.name!, p.metadata.namespace, { gracePeriodSeconds: 0 })
          .catch(() => undefined);
      } else if (!ready(p)) {
        const ip = `10.244.${this.nodes.indexOf(node)}.${Math.floor(Math.random() * 250) + 2}`;
        const t = timestamp() as unknown as Date;
        await this.client
          .updateStatus("pods", {
            ...p,
            status: {
              phase: "Running",
              podIP: ip,
              podIPs: [{ ip }],
              conditions: [{ type: "Ready", status: "True", lastTransitionTime: t }],
            },
          })
          .catch(() => undefined);
      }
    }
  }
}
