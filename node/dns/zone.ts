/**
 * The cluster zone: Services and Endpoints turned into an index, and the pure decision of what
 * one question gets, following the Kubernetes DNS specification:
 *   NAME.NS.svc.DOMAIN            A → ClusterIP; headless → every ready endpoint IP; ExternalName → CNAME
 *   _PORT._PROTO.NAME.NS.svc.DOMAIN  SRV → the named port (headless: one per ready endpoint)
 *   HOST.NAME.NS.svc.DOMAIN       A → a headless endpoint by hostname or dashed IP
 *   A-B-C-D.NS.pod.DOMAIN         A → A.B.C.D
 * Names that do not exist get NXDOMAIN, names that exist but lack the type get NOERROR with no
 * answer (AAAA always: the cluster is IPv4-only); both carry the zone's SOA in authority.
 */
import type { V1Endpoints, V1Service } from "@kubernetes/client-node";
import { canonicalName, CLASS_IN, RCODE, RR, type ResourceRecord } from "./wire.ts";

/** Seconds answers may be cached: short, as Services change (CoreDNS's default too). */
export const TTL = 5;

export interface ServicePort {
  name: string;
  protocol: string;
  port: number;
}

export interface EndpointAddress {
  ip: string;
  hostname?: string;
  ports: ServicePort[];
}

export interface ServiceEntry {
  name: string;
  namespace: string;
  clusterIP?: string;
  headless: boolean;
  externalName?: string;
  ports: ServicePort[];
  /** Ready addresses only. */
  endpoints: EndpointAddress[];
}

export interface Zone {
  /** Canonical cluster domain, e.g. "cluster.local". */
  domain: string;
  /** By "name.namespace". */
  services: Map<string, ServiceEntry>;
  namespaces: Set<string>;
  /** SOA serial: changes whenever the zone is rebuilt. */
  serial: number;
}

export function buildZone(
  domain: string,
  services: V1Service[],
  endpoints: V1Endpoints[],
  serial = Math.floor(Date.now() / 1000),
): Zone {
  const eps = new Map(endpoints.map((e) => [`${e.metadata?.name}.${e.metadata?.namespace ?? "default"}`, e]));
  const index = new Map<string, ServiceEntry>();
  const namespaces = new Set<string>();
  for (const s of services) {
    const name = s.metadata?.name;
    const namespace = s.metadata?.namespace ?? "default";
    if (!name) continue;
    const key = `${name}.${namespace}`.toLowerCase();
    const spec = s.spec ?? {};
    const headless = spec.clusterIP === "None";
    const endpointAddresses: EndpointAddress[] = [];
    for (const subset of eps.get(`${name}.${namespace}`)?.subsets ?? []) {
      const ports = (subset.ports ?? []).map((p) => ({
        name: p.name ?? "",
        protocol: p.protocol ?? "TCP",
        port: p.port,
      }));
      for (const a of subset.addresses ?? [])
        endpointAddresses.push({ ip: a.ip, ...(a.hostname ? { hostname: a.hostname } : {}), ports });
    }
    namespaces.add(namespace.toLowerCase());
    index.set(key, {
      name,
      namespace,
      headless,
      ...(spec.clusterIP && !headless ? { clusterIP: spec.clusterIP } : {}),
      ...(spec.type === "ExternalName" && spec.externalName ? { externalName: spec.externalName } : {}),
      ports: (spec.ports ?? []).map((p) => ({
        name: p.name ?? "",
        protocol: p.protocol ?? "TCP",
        port: p.port,
      })),
      endpoints: endpointAddresses.sort((a, b) => a.ip.localeCompare(b.ip)),
    });
  }
  return { domain: canonicalName(domain), services: index, namespaces, serial };
}

export type Decision =
  | { kind: "outside" }
  | {
      kind: "answer";
      rcode: number;
      answers: ResourceRecord[];
      authorities: ResourceRecord[];
      additionals: ResourceRecord[];
    };

export function soaRecord(zone: Zone): ResourceRecord {
  return {
    name: zone.domain,
    class: CLASS_IN,
    ttl: TTL,
    data: {
      type: RR.SOA,
      mname: `ns.dns.${zone.domain}`,
      rname: `hostmaster.${zone.domain}`,
      serial: zone.serial,
      refresh: 7200,
      retry: 1800,
      expire: 86400,
      minimum: TTL,
    },
  };
}

const a = (name: string, address: string): ResourceRecord => ({
  name,
  class: CLASS_IN,
  ttl: TTL,
  data: { type: RR.A, address },
});

/** The name a headless endpoint is known by: its hostname, or its IP with dashes. */
const endpointLabel = (e: EndpointAddress): string => (e.hostname ?? e.ip.replace(/\./g, "-")).toLowerCase();

const IPV4_DASHED = /^(\d{1,3})-(\d{1,3})-(\d{1,3})-(\d{1,3})$/;

/** What the cluster DNS answers to one question (name as asked; compared case-insensitively). */
export function decide(zone: Zone, qname: string, qtype: number): Decision {
  const name = canonicalName(qname);
  const d = zone.domain;
  if (name !== d && !name.endsWith(`.${d}`)) return { kind: "outside" };
  const soa = soaRecord(zone);
  const reply = (answers: ResourceRecord[], additionals: ResourceRecord[] = []): Decision =>
    answers.length > 0
      ? { kind: "answer", rcode: RCODE.NOERROR, answers, authorities: [], additionals }
      : { kind: "answer", rcode: RCODE.NOERROR, answers: [], authorities: [soa], additionals: [] };
  const nxdomain: Decision = {
    kind: "answer",
    rcode: RCODE.NXDOMAIN,
    answers: [],
    authorities: [soa],
    additionals: [],
  };
  const wants = (type: number): boolean => qtype === type || qtype === RR.ANY;

  if (name === d) return reply(wants(RR.SOA) ? [soa] : []);
  const labels = name.slice(0, -(d.length + 1)).split(".");
  const kind = labels.pop();
  if (kind === "pod") {
    if (labels.length === 0) return reply([]);
    if (labels.length === 1) return zone.namespaces.has(labels[0]!) ? reply([]) : nxdomain;
    const m = labels.length === 2 ? IPV4_DASHED.exec(labels[0]!) : null;
    if (!m || m.slice(1).some((o) => Number(o) > 255)) return nxdomain;
    return reply(wants(RR.A) ? [a(qname, m.slice(1).join("."))] : []);
  }
  if (kind !== "svc") return nxdomain;
  if (labels.length === 0) return reply([]);
  const ns = labels[labels.length - 1]!;
  if (labels.length === 1) return zone.namespaces.has(ns) ? reply([]) : nxdomain;
  const svc = zone.services.get(`${labels[labels.length - 2]}.${ns}`);
  if (!svc) return nxdomain;
  const svcName = `${svc.name}.${svc.namespace}.svc.${d}`.toLowerCase();

  if (labels.length === 2) {
    if (svc.externalName) {
      const cname: ResourceRecord = {
        name: qname,
        class: CLASS_IN,
        ttl: TTL,
        data: { type: RR.CNAME, target: svc.externalName },
      };
      return reply([cname]);
    }
    const answers: ResourceRecord[] = [];
    const additionals: ResourceRecord[] = [];
    if (wants(RR.A)) {
      if (svc.clusterIP) answers.push(a(qname, svc.clusterIP));
      else if (svc.headless)
        for (const ip of new Set(svc.endpoints.map((e) => e.ip))) answers.push(a(qname, ip));
    }
    if (wants(RR.SRV)) {
      for (const p of svc.ports.filter((p) => p.name)) {
        const s = srv(svc, svcName, p);
        answers.push(...s.answers);
        additionals.push(...s.additionals);
      }
    }
    return reply(answers, additionals);
  }
  if (labels.length === 3) {
    if (!svc.headless) return nxdomain;
    const host = labels[0]!;
    const matches = svc.endpoints.filter((e) => endpointLabel(e) === host);
    if (matches.length === 0) return nxdomain;
    return reply(wants(RR.A) ? matches.map((e) => a(qname, e.ip)) : []);
  }
  if (labels.length === 4 && labels[0]!.startsWith("_") && labels[1]!.startsWith("_")) {
    const portName = labels[0]!.slice(1);
    const proto = labels[1]!.slice(1).toUpperCase();
    const port = svc.ports.find(
      (p) => p.name.toLowerCase() === portName && p.protocol.toUpperCase() === proto,
    );
    if (!port) return nxdomain;
    if (!wants(RR.SRV)) return reply([]);
    const s = srv(svc, svcName, port, qname);
    return reply(s.answers, s.additionals);
  }
  return nxdomain;
}

/** SRV records for one service port: the service itself, or (headless) each ready endpoint with its A record. */
function srv(
  svc: ServiceEntry,
  svcName: string,
  port: ServicePort,
  owner = `_${port.name}._${port.protocol.toLowerCase()}.${svcName}`,
): { answers: ResourceRecord[]; additionals: ResourceRecord[] } {
  const record = (target: string, p: number): ResourceRecord => ({
    name: owner,
    class: CLASS_IN,
    ttl: TTL,
    data: { type: RR.SRV, priority: 0, weight: 100, port: p, target },
  });
  if (!svc.headless) return { answers: [record(svcName, port.port)], additionals: [] };
  const answers: ResourceRecord[] = [];
  const additionals: ResourceRecord[] = [];
  for (const e of svc.endpoints) {
    const ep = e.ports.find((x) => x.name === port.name && x.protocol === port.protocol);
    if (!ep) continue;
    const target = `${endpointLabel(e)}.${svcName}`;
    answers.push(record(target, ep.port));
    additionals.push(a(target, e.ip));
  }
  return { answers, additionals };
}
