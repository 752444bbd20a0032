import type { V1Endpoints, V1Service } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { buildZone, decide } from "../../../../node/dns/zone.ts";
import { RCODE, RR } from "../../../../node/dns/wire.ts";

const services: V1Service[] = [
  {
    metadata: { name: "sample", namespace: "default" },
    spec: { clusterIP: "10.96.0.20", ports: [{ name: "http", port: 80, protocol: "TCP" }] },
  },
  {
    metadata: { name: "db", namespace: "data" },
    spec: { clusterIP: "None", ports: [{ name: "pg", port: 5432, protocol: "TCP" }] },
  },
  {
    metadata: { name: "ext", namespace: "default" },
    spec: { type: "ExternalName", externalName: "example.com" },
  },
];
const endpoints: V1Endpoints[] = [
  {
    metadata: { name: "db", namespace: "data" },
    subsets: [
      {
        addresses: [{ ip: "10.244.1.7", hostname: "db-0" }, { ip: "10.244.2.9" }],
        notReadyAddresses: [{ ip: "10.244.3.3" }],
        ports: [{ name: "pg", port: 5432, protocol: "TCP" }],
      },
    ],
  },
];
const zone = buildZone("cluster.local", services, endpoints, 42);

const ask = (name: string, type: number = RR.A) => {
  const d = decide(zone, name, type);
  if (d.kind !== "answer") return d;
  return {
    rcode: d.rcode,
    answers: d.answers.map((r) => r.data),
    soa: d.authorities.some((r) => r.data.type === RR.SOA),
    additionals: d.additionals.map((r) => [r.name, r.data]),
  };
};

describe("cluster DNS answers", () => {
  it("answers a ClusterIP service's A record, case-insensitively and with a trailing dot", () => {
    expect(ask("sample.default.svc.cluster.local")).toMatchObject({
      rcode: RCODE.NOERROR,
      answers: [{ type: RR.A, address: "10.96.0.20" }],
    });
    expect(ask("Sample.DEFAULT.svc.cluster.local.")).toMatchObject({ answers: [{ address: "10.96.0.20" }] });
  });

  it("gives NXDOMAIN with the SOA for names that do not exist, so search lists move on", () => {
    for (const name of [
      "missing.default.svc.cluster.local",
      "sample.default.default.svc.cluster.local", // `sample.default` tried with the first search domain
      "sample.default.svc.cluster.local.default.svc.cluster.local",
      "sample.svc.cluster.local",
      "sample.cluster.local",
      "nope.cluster.local",
      "sample.other.svc.cluster.local",
    ])
      expect(ask(name), name).toMatchObject({ rcode: RCODE.NXDOMAIN, answers: [], soa: true });
  });

  it("answers NOERROR without records for AAAA and other types of existing names", () => {
    expect(ask("sample.default.svc.cluster.local", RR.AAAA)).toMatchObject({
      rcode: RCODE.NOERROR,
      answers: [],
      soa: true,
    });
    expect(ask("default.svc.cluster.local")).toMatchObject({ rcode: RCODE.NOERROR, answers: [] });
    expect(ask("svc.cluster.local")).toMatchObject({ rcode: RCODE.NOERROR, answers: [] });
    expect(ask("cluster.local", RR.SOA)).toMatchObject({
      rcode: RCODE.NOERROR,
      answers: [{ type: RR.SOA, serial: 42 }],
    });
  });

  it("answers a headless service with its ready endpoints only, each also by hostname or dashed IP", () => {
    expect(ask("db.data.svc.cluster.local")).toMatchObject({
      answers: [
        { type: RR.A, address: "10.244.1.7" },
        { type: RR.A, address: "10.244.2.9" },
      ],
    });
    expect(ask("db-0.db.data.svc.cluster.local")).toMatchObject({ answers: [{ address: "10.244.1.7" }] });
    expect(ask("10-244-2-9.db.data.svc.cluster.local")).toMatchObject({
      answers: [{ address: "10.244.2.9" }],
    });
    expect(ask("10-244-3-3.db.data.svc.cluster.local")).toMatchObject({ rcode: RCODE.NXDOMAIN });
  });

  it("answers SRV for named ports: the service, or each headless endpoint with its address", () => {
    expect(ask("_http._tcp.sample.default.svc.cluster.local", RR.SRV)).toMatchObject({
      answers: [{ type: RR.SRV, port: 80, target: "sample.default.svc.cluster.local" }],
    });
    expect(ask("_pg._tcp.db.data.svc.cluster.local", RR.SRV)).toEqual({
      rcode: RCODE.NOERROR,
      soa: false,
      answers: [
        { type: RR.SRV, priority: 0, weight: 100, port: 5432, target: "db-0.db.data.svc.cluster.local" },
        {
          type: RR.SRV,
          priority: 0,
          weight: 100,
          port: 5432,
          target: "10-244-2-9.db.data.svc.cluster.local",
        },
      ],
      additionals: [
        ["db-0.db.data.svc.cluster.local", { type: RR.A, address: "10.244.1.7" }],
        ["10-244-2-9.db.data.svc.cluster.local", { type: RR.A, address: "10.244.2.9" }],
      ],
    });
    expect(ask("_dns._udp.sample.default.svc.cluster.local", RR.SRV)).toMatchObject({
      rcode: RCODE.NXDOMAIN,
    });
  });

  it("answers ExternalName with a CNAME and dashed pod IPs under pod.DOMAIN", () => {
    expect(ask("ext.default.svc.cluster.local")).toMatchObject({
      answers: [{ type: RR.CNAME, target: "example.com" }],
    });
    expect(ask("10-244-1-7.data.pod.cluster.local")).toMatchObject({ answers: [{ address: "10.244.1.7" }] });
    expect(ask("10-244-1-300.data.pod.cluster.local")).toMatchObject({ rcode: RCODE.NXDOMAIN });
  });

  it("leaves names outside the cluster domain to the caller", () => {
    expect(decide(zone, "example.com", RR.A)).toEqual({ kind: "outside" });
    expect(decide(zone, "notcluster.local", RR.A)).toEqual({ kind: "outside" });
  });

  it("sees a Service created later once the zone is rebuilt", () => {
    const later = buildZone(
      "cluster.local",
      [...services, { metadata: { name: "late", namespace: "default" }, spec: { clusterIP: "10.96.0.33" } }],
      endpoints,
    );
    expect(decide(later, "late.default.svc.cluster.local", RR.A)).toMatchObject({
      answers: [{ data: { address: "10.96.0.33" } }],
    });
  });
});
