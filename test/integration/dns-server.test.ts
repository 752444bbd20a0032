/**
 * The cluster DNS server on loopback sockets: forwarding to the node's nameservers (a fake
 * upstream here), SERVFAIL when the upstream is silent or the zone is not known yet, FORMERR for
 * garbage, truncation over UDP with the full answer over TCP, pipelined TCP queries.
 */
import type { V1Endpoints, V1Service } from "@kubernetes/client-node";
import { createSocket, type Socket } from "node:dgram";
import { randomInt } from "node:crypto";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DnsServer, parseResolvConf } from "../../node/dns/server.ts";
import { buildZone } from "../../node/dns/zone.ts";
import { CLASS_IN, decodeMessage, encodeMessage, RCODE, RR, type Message } from "../../node/dns/wire.ts";

const query = (name: string, type: number = RR.A, id = randomInt(65536)): Uint8Array =>
  encodeMessage({
    id,
    flags: { qr: false, opcode: 0, aa: false, tc: false, rd: true, ra: false, rcode: 0 },
    questions: [{ name, type, class: CLASS_IN }],
    answers: [],
    authorities: [],
    additionals: [],
  });

function udp(port: number, bytes: Uint8Array): Promise<Message> {
  return new Promise((resolve, reject) => {
    const s = createSocket("udp4");
    const t = setTimeout(() => (s.close(), reject(new Error("no answer"))), 3000);
    s.on("message", (m) => {
      clearTimeout(t);
      s.close();
      resolve(decodeMessage(m));
    });
    s.send(bytes, port, "127.0.0.1");
  });
}

/** Sends every query on one TCP connection at once; resolves to the answers in order. */
function tcp(port: number, queries: Uint8Array[]): Promise<Message[]> {
  return new Promise((resolve, reject) => {
    const out: Message[] = [];
    const sock = connect(port, "127.0.0.1", () => {
      for (const q of queries) {
        const f = Buffer.alloc(q.length + 2);
        f.writeUInt16BE(q.length, 0);
        f.set(q, 2);
        sock.write(f);
      }
    });
    let buf = Buffer.alloc(0);
    sock.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(decodeMessage(buf.subarray(2, 2 + buf.readUInt16BE(0))));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (out.length === queries.length) {
        sock.destroy();
        resolve(out);
      }
    });
    sock.on("error", reject);
  });
}

const port = randomInt(30000, 40000);
const upstreamPort = port + 1;
let upstream: Socket;
const server = new DnsServer({
  domain: "cluster.local",
  address: "127.0.0.1",
  port,
  upstreams: [{ address: "127.0.0.1", port: upstreamPort }],
  forwardTimeoutMs: 300,
});

beforeAll(async () => {
  // a fake upstream: example.com → 192.0.2.1, silent for anything else
  upstream = createSocket("udp4");
  upstream.on("message", (m, r) => {
    const q = decodeMessage(m);
    if (q.questions[0]?.name !== "example.com") return;
    const a: Message = {
      ...q,
      flags: { ...q.flags, qr: true, ra: true },
      answers: [
        { name: "example.com", class: CLASS_IN, ttl: 60, data: { type: RR.A, address: "192.0.2.1" } },
      ],
    };
    upstream.send(encodeMessage(a), r.port, r.address);
  });
  await new Promise<void>((r) => upstream.bind(upstreamPort, "127.0.0.1", r));
  await server.start();
});

afterAll(async () => {
  await server.stop();
  upstream.close();
});

describe("cluster DNS server (loopback)", () => {
  it("SERVFAILs cluster names until the zone is known, and forwards the rest to the upstream", async () => {
    expect((await udp(port, query("sample.default.svc.cluster.local"))).flags.rcode).toBe(RCODE.SERVFAIL);
    const fwd = await udp(port, query("example.com"));
    expect(fwd.flags).toMatchObject({ rcode: RCODE.NOERROR, ra: true });
    expect(fwd.answers.map((r) => r.data)).toEqual([{ type: RR.A, address: "192.0.2.1" }]);
    const silent = await udp(port, query("silent.example.org"));
    expect(silent.flags.rcode).toBe(RCODE.SERVFAIL);
  });

  it("answers FORMERR to garbage and NOTIMP to other opcodes", async () => {
    const garbage = Uint8Array.from([1, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63, 1]);
    const r = await udp(port, garbage);
    expect([r.id, r.flags.rcode]).toEqual([0x0102, RCODE.FORMERR]);
    const update = query("cluster.local", RR.SOA);
    update[2] = (5 << 3) | (update[2]! & 0x87); // opcode UPDATE
    expect((await udp(port, update)).flags.rcode).toBe(RCODE.NOTIMP);
  });

  it("truncates a big answer over UDP and gives it whole over TCP, answering pipelined queries in order", async () => {
    const ips = Array.from({ length: 80 }, (_, i) => `10.244.${i}.5`);
    const services: V1Service[] = [
      { metadata: { name: "big", namespace: "default" }, spec: { clusterIP: "None" } },
      { metadata: { name: "small", namespace: "default" }, spec: { clusterIP: "10.96.0.44" } },
    ];
    const endpoints: V1Endpoints[] = [
      {
        metadata: { name: "big", namespace: "default" },
        subsets: [{ addresses: ips.map((ip) => ({ ip })) }],
      },
    ];
    server.setZone(buildZone("cluster.local", services, endpoints));
    const over = await udp(port, query("big.default.svc.cluster.local"));
    expect([over.flags.tc, over.answers.length]).toEqual([true, 0]);
    const [big, small, missing] = await tcp(port, [
      query("big.default.svc.cluster.local", RR.A, 1),
      query("small.default.svc.cluster.local", RR.A, 2),
      query("nope.default.svc.cluster.local", RR.A, 3),
    ]);
    expect([big!.id, big!.flags.tc, big!.answers.length]).toEqual([1, false, 80]);
    expect([small!.id, small!.answers.map((r) => r.data)]).toEqual([
      2,
      [{ type: RR.A, address: "10.96.0.44" }],
    ]);
    expect([missing!.id, missing!.flags.rcode]).toEqual([3, RCODE.NXDOMAIN]);
  });

  it("reads upstreams from resolv.conf nameserver lines", () => {
    expect(
      parseResolvConf("# x\nsearch lab\nnameserver 192.168.1.1\nnameserver ::1\n nameserver 127.0.0.53\n"),
    ).toEqual([
      { address: "192.168.1.1", port: 53 },
      { address: "127.0.0.53", port: 53 },
    ]);
  });
});
