/** The node IPAM loop: gives every node without one a pod CIDR from the cluster CIDR (allocatePodCidrs). */
import type { V1Node } from "@kubernetes/client-node";
import type { Informer } from "../../api/informer.ts";
import { WorkQueue } from "../../api/workqueue.ts";
import { runController } from "../../api/controller.ts";
import type { ObjectWriter } from "../loop-client.ts";
import { isConflict, isNotFound, recordEvent } from "../loop-client.ts";
import type { CidrPool } from "./ipam.ts";
import { allocatePodCidrs, cidrPool } from "./ipam.ts";

const ALL = "all-nodes";

export class NodeIpamController {
  readonly queue = new WorkQueue({ baseDelayMs: 100, maxDelayMs: 30_000 });
  private readonly pool: CidrPool;

  constructor(
    private readonly nodes: Informer<V1Node>,
    private readonly w: ObjectWriter,
    clusterCidr: string,
    nodeMaskSize = 24,
    private readonly onError?: (err: unknown) => void,
  ) {
    this.pool = cidrPool(clusterCidr, nodeMaskSize);
    const kick = (n: V1Node): void => {
      if (!n.spec?.podCIDR) this.queue.add(ALL);
    };
    nodes.on({ add: kick, update: (_o, n) => kick(n) });
  }

  run(signal: AbortSignal): Promise<void> {
    return runController(signal, {
      queue: this.queue,
      reconcile: () => this.reconcile(),
      initialKeys: [ALL],
      onError: this.onError,
    });
  }

  /** One pass over all nodes: decisions need the whole set of used subnets. */
  async reconcile(): Promise<void> {
    const nodes = [...this.nodes.cache.values()];
    const { assign, exhausted } = allocatePodCidrs(this.pool, nodes);
    for (const [name, cidr] of Object.entries(assign)) {
      const node = this.nodes.get(name);
      if (!node) continue;
      try {
        await this.w.update("nodes", undefined, {
          ...node,
          spec: { ...node.spec, podCIDR: cidr, podCIDRs: [cidr] },
        });
      } catch (err) {
        if (isConflict(err)) this.queue.addAfter(ALL, 200);
        else if (!isNotFound(err)) throw err;
      }
    }
    for (const name of exhausted) {
      const node = this.nodes.get(name);
      if (node)
        await recordEvent(
          this.w,
          "node-ipam-controller",
          { apiVersion: "v1", kind: "Node", ...node, metadata: { ...node.metadata, namespace: "default" } },
          "Warning",
          "CIDRNotAvailable",
          `No pod CIDR left in the cluster CIDR for node ${name}`,
        );
    }
  }
}
