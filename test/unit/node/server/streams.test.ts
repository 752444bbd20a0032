/**
 * The agent's streaming plumbing, pure parts: SPDY/3.1 frames and header blocks (the peer's zlib
 * stream must decode every header block in turn), the tunnelling subprotocol names, stream paths
 * and port lists. The protocols against containerd and kubectl: test/integration/agent-streaming.
 */
import { Duplex } from "node:stream";
import { createInflate, constants } from "node:zlib";
import { describe, expect, it } from "vitest";
import {
  controlFrame,
  dataFrame,
  headerBlock,
  parseFrames,
  SpdyClientSession,
} from "../../../../node/server/spdy.ts";
import { tunnelledProtocols } from "../../../../node/server/streams.ts";
import { parsePorts, parseStreamTarget } from "../../../../node/server/upgrade.ts";
import { until } from "../../../helpers/until.ts";

/** Decodes a header block written as headerBlock() does. */
function decodeBlock(b: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let off = 4;
  for (let i = 0; i < b.readUInt32BE(0); i++) {
    const kl = b.readUInt32BE(off);
    const k = b.subarray(off + 4, off + 4 + kl).toString();
    off += 4 + kl;
    const vl = b.readUInt32BE(off);
    out[k] = b.subarray(off + 4, off + 4 + vl).toString();
    off += 4 + vl;
  }
  return out;
}

describe("SPDY/3.1 frames", () => {
  it("control and data frames parse back, split anywhere", () => {
    const a = controlFrame(6, 0, Buffer.from([0, 0, 0, 7]));
    const b = dataFrame(3, 1, Buffer.from("hello"));
    const all = Buffer.concat([a, b]);
    expect(a.subarray(0, 4)).toEqual(Buffer.from([0x80, 3, 0, 6]));
    const first = parseFrames(all.subarray(0, 13));
    expect(first.frames).toHaveLength(1);
    expect(first.frames[0]).toMatchObject({ control: true, type: 6 });
    const second = parseFrames(Buffer.concat([first.rest, all.subarray(13)]));
    expect(second.frames).toHaveLength(1);
    expect(second.frames[0]).toMatchObject({ control: false, id: 3, flags: 1 });
    expect(second.frames[0]!.payload.toString()).toBe("hello");
    expect(second.rest.length).toBe(0);
  });

  it("header names go lower-case, as SPDY requires", () => {
    expect(decodeBlock(headerBlock({ streamType: "stdin", Port: "80" }))).toEqual({
      streamtype: "stdin",
      port: "80",
    });
  });

  it("a session's SYN_STREAMs carry odd ids and one zlib stream the peer decodes in turn; data follows its SYN; PING is echoed", async () => {
    // the peer's side: what the session writes lands in `sent`; push() is what the peer sends
    const sent: Buffer[] = [];
    const socket = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        sent.push(chunk);
        cb();
      },
    });
    const s = new SpdyClientSession(socket, Buffer.alloc(0));
    const got: string[] = [];
    let ended = false;
    const err = s.open({ streamType: "error" });
    const out = s.open(
      { streamType: "stdout" },
      { data: (d) => got.push(d.toString()), end: () => (ended = true) },
    );
    s.write(err, Buffer.from("x"));
    s.finish(out);
    // header compression runs on libuv's pool: wait for the four frames, not a fixed time
    const { frames } = await until(
      "four frames written",
      () => {
        const p = parseFrames(Buffer.concat(sent));
        return p.frames.length >= 4 && p;
      },
      5_000,
    );
    expect(frames.map((f) => [f.control, f.type, f.id])).toEqual([
      [true, 1, 1],
      [true, 1, 3],
      [false, 0, 1],
      [false, 0, 3],
    ]);
    const inflate = createInflate();
    const inflated: Record<string, string>[] = [];
    for (const f of frames.slice(0, 2)) {
      const chunks: Buffer[] = [];
      const onData = (d: Buffer): void => void chunks.push(d);
      inflate.on("data", onData);
      inflate.write(f.payload.subarray(10));
      await new Promise<void>((r) => inflate.flush(constants.Z_SYNC_FLUSH, () => r()));
      inflate.off("data", onData);
      inflated.push(decodeBlock(Buffer.concat(chunks)));
    }
    expect(inflated).toEqual([{ streamtype: "error" }, { streamtype: "stdout" }]);
    expect(frames[3]!.flags).toBe(1);
    // the peer answers: data then FIN on stdout, and a PING
    sent.length = 0;
    socket.push(Buffer.concat([dataFrame(3, 0, Buffer.from("out")), dataFrame(3, 1, Buffer.alloc(0))]));
    socket.push(controlFrame(6, 0, Buffer.from([0, 0, 0, 2])));
    const echoed = await until("the PING echoed", () => parseFrames(Buffer.concat(sent)).frames[0], 5_000);
    expect(echoed).toMatchObject({ control: true, type: 6 });
    expect(got).toEqual(["out"]);
    expect(ended).toBe(true);
    s.close();
  });
});

describe("stream requests", () => {
  it("tunnelled subprotocols lose their SPDY/3.1+ prefix; others are not tunnels", () => {
    expect(tunnelledProtocols(["SPDY/3.1+portforward.k8s.io", "v5.channel.k8s.io"])).toEqual([
      "portforward.k8s.io",
    ]);
    expect(tunnelledProtocols(["SPDY/3.1+evil.example.com"])).toEqual([]);
  });

  it("paths: exec/attach name a container, portForward a pod", () => {
    expect(parseStreamTarget("/exec/ns/p/c")).toEqual({
      kind: "exec",
      namespace: "ns",
      pod: "p",
      container: "c",
    });
    expect(parseStreamTarget("/portForward/ns/p")).toEqual({
      kind: "portForward",
      namespace: "ns",
      pod: "p",
      container: "",
    });
    expect(parseStreamTarget("/attach/ns/p")).toBeUndefined();
    expect(parseStreamTarget("/containerLogs/ns/p/c")).toBeUndefined();
  });

  it("ports: comma lists and repeats; a bad one named", () => {
    expect(parsePorts(new URLSearchParams("ports=80,8080&ports=9090"))).toEqual([80, 8080, 9090]);
    expect(() => parsePorts(new URLSearchParams("ports=http"))).toThrow(
      /invalid port "http": ports are 1-65535/,
    );
    expect(() => parsePorts(new URLSearchParams(""))).toThrow(/at least one port/);
  });
});
