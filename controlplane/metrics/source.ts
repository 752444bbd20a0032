/**
 * Where lab-server gets resource metrics: it asks each node's agent for /stats/summary over the
 * agent's HTTPS port, as the kubelet-client identity (what metrics-server does with the kubelet),
 * so any lab-server of an HA cluster answers from the nodes themselves, nothing is written to
 * etcd, and a node needs no permission it did not have. Hollow nodes run no containers and no
 * agent server: their figures are made up here from their pods (api/metrics.ts hollowSummary).
 * Summaries are kept for a short while so `kubectl top` and the HPA controller reading at once
 * cost one round per node.
 */
import type { V1Node, V1Pod } from "@kubernetes/client-node";
import { request } from "node:https";
import { hollowSummary, type Summary } from "../../api/metrics.ts";
import { findResource } from "../../api/resources.ts";
import type { KubeletClientTls } from "../node-proxy.ts";
import type { Registry } from "../registry.ts";

/** The label hollow nodes carry (node/hollow/hollow.ts HOLLOW_LABEL). */
export const HOLLOW_LABEL = "lab.io/hollow";
const NODES = findResource("", "v1", "nodes")!;
const PODS = findResource("", "v1", "pods")!;

export interface MetricsSourceOptions {
  kubeletClient: KubeletClientTls | undefined;
  /** How long a node's summary is reused. */
  cacheMs?: number;
  /** Deadline of one agent's answer. */
  timeoutMs?: number;
}

function fetchSummary(
  tls: KubeletClientTls,
  host: string,
  port: number,
  timeoutMs: number,
): Promise<Summary> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port,
        path: "/stats/summary",
        method: "GET",
        cert: tls.cert,
        key: tls.key,
        ca: tls.ca,
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          if ((res.statusCode ?? 0) !== 200)
            return reject(
              new Error(`agent at ${host}:${port} answered ${res.statusCode}: ${text.slice(0, 200)}`),
            );
          try {
            resolve(JSON.parse(text) as Summary);
          } catch {
            reject(new Error(`agent at ${host}:${port} sent a summary that is not JSON`));
          }
        });
      },
    );
    req.on("timeout", () =>
      req.destroy(new Error(`agent at ${host}:${port} did not answer within ${timeoutMs} ms`)),
    );
    req.on("error", reject);
    req.end();
  });
}

export class MetricsSource {
  private readonly cache = new Map<string, { at: number; summary: Promise<Summary | undefined> }>();

  constructor(
    private readonly registry: Registry,
    private readonly opts: MetricsSourceOptions,
  ) {}

  async nodes(): Promise<V1Node[]> {
    return (await this.registry.list(NODES, undefined, { labels: [], fields: [] }))
      .items as unknown as V1Node[];
  }

  /** The node's summary, or undefined when it cannot be had now (the node is left out, as metrics-server does). */
  summary(node: V1Node): Promise<Summary | undefined> {
    const name = node.metadata?.name ?? "";
    const now = Date.now();
    const hit = this.cache.get(name);
    if (hit && now - hit.at < (this.opts.cacheMs ?? 5_000)) return hit.summary;
    const summary = this.read(node).catch(() => undefined);
    this.cache.set(name, { at: now, summary });
    if (this.cache.size > 10_000) for (const k of [...this.cache.keys()].slice(0, 1000)) this.cache.delete(k);
    return summary;
  }

  private async read(node: V1Node): Promise<Summary | undefined> {
    const name = node.metadata?.name ?? "";
    if (node.metadata?.labels?.[HOLLOW_LABEL] !== undefined) {
      const pods = await this.registry.list(PODS, undefined, {
        labels: [],
        fields: [{ field: "spec.nodeName", op: "=", value: name }],
      });
      return hollowSummary(name, pods.items as unknown as V1Pod[], Date.now());
    }
    const tls = this.opts.kubeletClient;
    const ip = node.status?.addresses?.find((a) => a.type === "InternalIP")?.address;
    const port = node.status?.daemonEndpoints?.kubeletEndpoint?.Port;
    if (!tls || !ip || !port) return undefined;
    return fetchSummary(tls, ip, port, this.opts.timeoutMs ?? 5_000);
  }
}
