import { describe, expect, it } from "vitest";
import {
  CLASS_IN,
  decodeMessage,
  encodeMessage,
  encodeWithin,
  RCODE,
  RR,
  WireError,
  type Message,
} from "../../../../node/dns/wire.ts";

const flags = { qr: true, opcode: 0, aa: true, tc: false, rd: true, ra: false, rcode: RCODE.NOERROR };

describe("DNS wire format", () => {
  it("decodes a query as a stub resolver sends it", () => {
    // id 0xbeef, RD, one question: sample.default.svc.cluster.local A IN
    const name = [6, ..."sample", 7, ..."default", 3, ..."svc", 7, ..."cluster", 5, ..."local", 0].map((c) =>
      typeof c === "string" ? c.charCodeAt(0) : c,
    );
    const bytes = Uint8Array.from([0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, ...name, 0, 1, 0, 1]);
    const m = decodeMessage(bytes);
    expect(m.id).toBe(0xbeef);
    expect(m.flags).toMatchObject({ qr: false, rd: true, opcode: 0 });
    expect(m.questions).toEqual([{ name: "sample.default.svc.cluster.local", type: RR.A, class: CLASS_IN }]);
  });

  it("round-trips A, CNAME, SRV, SOA and OPT records, compressing repeated names", () => {
    const m: Message = {
      id: 7,
      flags,
      questions: [{ name: "_http._tcp.web.default.svc.cluster.local", type: RR.SRV, class: CLASS_IN }],
      answers: [
        {
          name: "_http._tcp.web.default.svc.cluster.local",
          class: CLASS_IN,
          ttl: 5,
          data: {
            type: RR.SRV,
            priority: 0,
            weight: 100,
            port: 8080,
            target: "10-0-0-1.web.default.svc.cluster.local",
          },
        },
        { name: "x.cluster.local", class: CLASS_IN, ttl: 5, data: { type: RR.CNAME, target: "example.com" } },
      ],
      authorities: [
        {
          name: "cluster.local",
          class: CLASS_IN,
          ttl: 5,
          data: {
            type: RR.SOA,
            mname: "ns.dns.cluster.local",
            rname: "hostmaster.cluster.local",
            serial: 4000000000,
            refresh: 7200,
            retry: 1800,
            expire: 86400,
            minimum: 5,
          },
        },
      ],
      additionals: [
        {
          name: "10-0-0-1.web.default.svc.cluster.local",
          class: CLASS_IN,
          ttl: 5,
          data: { type: RR.A, address: "10.0.0.1" },
        },
        { name: "", class: 1232, ttl: 0, data: { type: RR.OPT, raw: new Uint8Array() } },
      ],
    };
    const bytes = encodeMessage(m);
    expect(decodeMessage(bytes)).toEqual(m);
    // "cluster.local" is spelled out once; every later occurrence is a 2-byte pointer
    const text = Buffer.from(bytes).toString("latin1");
    expect(text.split("cluster").length - 1).toBe(1);
    expect(bytes.length).toBeLessThan(200);
  });

  it("encodes AAAA with :: and rejects malformed messages instead of misreading them", () => {
    const m: Message = {
      id: 1,
      flags,
      questions: [],
      answers: [{ name: "a", class: CLASS_IN, ttl: 1, data: { type: RR.AAAA, address: "fd00::1" } }],
      authorities: [],
      additionals: [],
    };
    expect(decodeMessage(encodeMessage(m)).answers[0]!.data).toEqual({
      type: RR.AAAA,
      address: "fd00:0:0:0:0:0:0:1",
    });
    const header = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    expect(() => decodeMessage(Uint8Array.from([0, 1, 0]))).toThrow(WireError);
    // a name pointing at itself
    expect(() => decodeMessage(Uint8Array.from([...header, 0xc0, 12, 0, 1, 0, 1]))).toThrow(/loop/);
    // a label running past the end
    expect(() => decodeMessage(Uint8Array.from([...header, 9, 97, 0, 1, 0, 1]))).toThrow(WireError);
    // a question announced but missing
    expect(() => decodeMessage(Uint8Array.from(header))).toThrow(WireError);
  });

  it("sets TC and drops the records when an answer does not fit a UDP payload", () => {
    const answers = Array.from({ length: 60 }, (_, i) => ({
      name: "big.default.svc.cluster.local",
      class: CLASS_IN,
      ttl: 5,
      data: { type: RR.A, address: `10.0.${i}.1` },
    }));
    const m: Message = {
      id: 9,
      flags,
      questions: [{ name: "big.default.svc.cluster.local", type: RR.A, class: CLASS_IN }],
      answers,
      authorities: [],
      additionals: [],
    };
    const small = decodeMessage(encodeWithin(m, 512));
    expect(small.flags.tc).toBe(true);
    expect(small.answers).toEqual([]);
    expect(small.questions).toEqual(m.questions);
    const whole = decodeMessage(encodeWithin(m, 65535));
    expect(whole.flags.tc).toBe(false);
    expect(whole.answers).toHaveLength(60);
  });
});
