/**
 * The service proxy's nftables ruleset, rendered as one text from Services and Endpoints and
 * applied with `nft -f` as one transaction (the table is deleted and recreated inside it, so no
 * packet ever sees half a ruleset). ClusterIP:port and NodePort pick a random ready endpoint with
 * numgen; not-ready addresses are never used.
 */
import type { V1Endpoints, V1Service, V1ServicePort } from "@kubernetes/client-node";
import { createHash } from "node:crypto";

export const TABLE = "lab_proxy";
/** Packets to masquerade on the way out: NodePort traffic and hairpin (a pod reaching itself). */
const MASQ_MARK = "0x4000";

export interface Backend {
  ip: string;
  port: number;
}

export interface ServiceRule {
  /** namespace/name:port, for comments and chain names. */
  id: string;
  protocol: "tcp" | "udp";
  clusterIP?: string;
  port: number;
  nodePort?: number;
  backends: Backend[];
}

/** The endpoint port for a service port: matched by name (and protocol), as the endpoints controller writes them. */
function endpointPort(
  subsetPorts: { name?: string; port: number; protocol?: string }[],
  sp: V1ServicePort,
): number | undefined {
  const proto = sp.protocol ?? "TCP";
  const match = subsetPorts.find(
    (p) => (p.name ?? "") === (sp.name ?? "") && (p.protocol ?? "TCP") === proto,
  );
  return match?.port;
}

/** Services × Endpoints → one rule per service port, with its ready backends, in a stable order. */
export function serviceRules(services: V1Service[], endpoints: V1Endpoints[]): ServiceRule[] {
  const eps = new Map(endpoints.map((e) => [`${e.metadata?.namespace ?? "default"}/${e.metadata?.name}`, e]));
  const rules: ServiceRule[] = [];
  for (const s of services) {
    const key = `${s.metadata?.namespace ?? "default"}/${s.metadata?.name}`;
    const clusterIP = s.spec?.clusterIP && s.spec.clusterIP !== "None" ? s.spec.clusterIP : undefined;
    const ep = eps.get(key);
    for (const sp of s.spec?.ports ?? []) {
      const protocol = (sp.protocol ?? "TCP").toLowerCase();
      if (protocol !== "tcp" && protocol !== "udp") continue;
      const backends: Backend[] = [];
      for (const subset of ep?.subsets ?? []) {
        const port = endpointPort(subset.ports ?? [], sp);
        if (port === undefined) continue;
        for (const a of subset.addresses ?? []) backends.push({ ip: a.ip, port });
      }
      backends.sort((a, b) => a.ip.localeCompare(b.ip) || a.port - b.port);
      const nodePort =
        (s.spec?.type === "NodePort" || s.spec?.type === "LoadBalancer") && sp.nodePort
          ? sp.nodePort
          : undefined;
      if (!clusterIP && !nodePort) continue;
      rules.push({
        id: `${key}:${sp.name || sp.port}`,
        protocol: protocol as "tcp" | "udp",
        ...(clusterIP ? { clusterIP } : {}),
        port: sp.port,
        ...(nodePort ? { nodePort } : {}),
        backends,
      });
    }
  }
  return rules.sort((a, b) => a.id.localeCompare(b.id));
}

const chainName = (id: string): string => `svc_${createHash("sha256").update(id).digest("hex").slice(0, 12)}`;
const comment = (s: string): string => `comment ${JSON.stringify(s.slice(0, 120))}`;

/**
 * Cluster DNS is answered on every node by the agent itself: queries to the cluster DNS address
 * (port 53, UDP and TCP) are DNATed to the agent's own listener, so no DNS Endpoints are needed
 * and each node answers without any other node.
 */
export interface LocalDns {
  clusterIPs: string[];
  address: string;
  port: number;
}

/** The whole ruleset text for `nft -f`. */
export function renderRuleset(rules: ServiceRule[], localDns?: LocalDns): string {
  const out: string[] = [];
  out.push(`# Rendered by lab-agent's service proxy; replaced atomically on every change.`);
  // create-then-delete makes the first apply and every later one the same transaction shape
  out.push(`table ip ${TABLE}`, `delete table ip ${TABLE}`, `table ip ${TABLE} {`);
  const services: string[] = [];
  for (const ip of localDns?.clusterIPs ?? [])
    for (const proto of ["udp", "tcp"])
      services.push(
        `    ip daddr ${ip} ${proto} dport 53 dnat to ${localDns!.address}:${localDns!.port} ${comment("cluster DNS")}`,
      );
  const nodeports: string[] = [];
  const chains: string[] = [];
  for (const r of rules) {
    const chain = chainName(r.id);
    if (r.backends.length === 0) continue; // nothing ready: no rule, the connection is not redirected
    if (r.clusterIP)
      services.push(
        `    ip daddr ${r.clusterIP} ${r.protocol} dport ${r.port} jump ${chain} ${comment(r.id)}`,
      );
    if (r.nodePort) {
      nodeports.push(
        `    ${r.protocol} dport ${r.nodePort} meta mark set ${MASQ_MARK} jump ${chain} ${comment(`${r.id} nodePort`)}`,
      );
    }
    const eps = r.backends.map((b, i) => ({ ...b, chain: `${chain}_${i}` }));
    chains.push(`  chain ${chain} {`);
    if (eps.length === 1) chains.push(`    jump ${eps[0]!.chain}`);
    else
      chains.push(
        `    numgen random mod ${eps.length} vmap { ${eps.map((e, i) => `${i} : jump ${e.chain}`).join(", ")} }`,
      );
    chains.push(`  }`);
    for (const e of eps) {
      chains.push(`  chain ${e.chain} {`);
      chains.push(`    ip saddr ${e.ip} meta mark set ${MASQ_MARK}`);
      chains.push(`    meta l4proto ${r.protocol} dnat to ${e.ip}:${e.port}`);
      chains.push(`  }`);
    }
  }
  out.push(`  chain services {`, ...services, `    fib daddr type local jump nodeports`, `  }`);
  out.push(`  chain nodeports {`, ...nodeports, `  }`);
  out.push(...chains);
  out.push(
    `  chain prerouting {`,
    `    type nat hook prerouting priority dstnat; policy accept;`,
    `    jump services`,
    `  }`,
    `  chain output {`,
    // "dstnat" is only a keyword for prerouting; -100 is the same priority
    `    type nat hook output priority -100; policy accept;`,
    `    jump services`,
    `  }`,
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    `    meta mark & ${MASQ_MARK} == ${MASQ_MARK} masquerade`,
    `  }`,
  );
  out.push(`}`);
  return out.join("\n") + "\n";
}
