import { describe, expect, it } from "vitest";
import {
  emptyWork,
  fingerprintOf,
  parseProbe,
  renderMarker,
  staleReason,
  type NodeFacts,
  type NodeWork,
} from "../../../bootstrap/applied.ts";
import { sha256 } from "../../../lib/digest.ts";

const work = (): NodeWork => ({
  ...emptyWork(),
  files: [
    { path: "/etc/lab/pki/node.key", data: "KEY\n", mode: 0o600 },
    { path: "/etc/systemd/system/lab-agent.service", data: "[Unit]\n" },
  ],
  uploads: [{ path: "/opt/lab/bin/node", sha256: "a".repeat(64), mode: 0o755 }],
  units: ["containerd.service", "lab-agent.service"],
  images: ["docker.io/library/pause:3.9"],
  inputs: { arch: "x86_64" },
});

/** What the probe prints on a node where `w` was applied and still stands. */
function probeOutput(fp: string, w = work()): string {
  return [
    "arch x86_64",
    "now 1000",
    "chronyd",
    "== addr",
    "2: ens3    inet 10.1.0.11/24 brd 10.1.0.255 scope global ens3\\       valid_lft forever",
    "==",
    `applied join-nodes ${fp}`,
    "applied clock 0123",
    "== sha",
    ...w.files.map((f) => `${sha256(f.data)}  ${f.path}`),
    "==",
    ...w.files.map((f) => `stat ${f.path} ${(f.mode ?? 0o644).toString(8)} root:root`),
    "ustat /opt/lab/bin/node 755 99000000 1700000000 4242",
    `sidecar /opt/lab/bin/node ${"a".repeat(64)} 99000000 1700000000 4242`,
    // systemctl show: one block per unit, in whatever property order
    "== unitprop",
    "Id=containerd.service",
    "ActiveState=active",
    "",
    "ActiveState=active",
    "Id=lab-agent.service",
    "==",
    "== image",
    "docker.io/library/pause:3.9",
    "docker.io/library/busybox:lab",
    "==",
  ].join("\n");
}

const facts = (out: string): NodeFacts => parseProbe(out, 1_000_000, 1_000_500);

describe("applied markers: when a rerun may skip a step on a node", () => {
  it("fingerprints what a step applies, whatever the order it was listed in", () => {
    const a = work();
    const b = work();
    b.files.reverse();
    b.units.reverse();
    expect(fingerprintOf("join-nodes", "v1", a)).toBe(fingerprintOf("join-nodes", "v1", b));
    expect(fingerprintOf("join-nodes", "v1", a)).toMatch(/^[0-9a-f]{64}$/);
    // Content, mode, inputs, the step and the code version all count.
    const changed = (f: (w: NodeWork) => void) => {
      const w = work();
      f(w);
      return fingerprintOf("join-nodes", "v1", w);
    };
    const base = fingerprintOf("join-nodes", "v1", a);
    expect(changed((w) => (w.files[0]!.data = "OTHER\n"))).not.toBe(base);
    expect(changed((w) => (w.files[1]!.mode = 0o600))).not.toBe(base);
    expect(changed((w) => (w.uploads[0]!.sha256 = "b".repeat(64)))).not.toBe(base);
    expect(changed((w) => (w.inputs.arch = "aarch64"))).not.toBe(base);
    expect(changed((w) => w.images.push("x:1"))).not.toBe(base);
    expect(fingerprintOf("vip", "v1", a)).not.toBe(base);
    expect(fingerprintOf("join-nodes", "v2", a)).not.toBe(base);
  });

  it("writes a marker with the fingerprint first, then what the probe must look at", () => {
    expect(renderMarker("f00", work()).split("\n")).toEqual([
      "f00",
      "file /etc/lab/pki/node.key",
      "file /etc/systemd/system/lab-agent.service",
      "upload /opt/lab/bin/node",
      "unit containerd.service",
      "unit lab-agent.service",
      "image docker.io/library/pause:3.9",
    ]);
  });

  it("reads the probe's facts: markers, files, uploads, units in either property order, images", () => {
    const f = facts(probeOutput("abc"));
    expect(f.arch).toBe("x86_64");
    expect(f.chronyd).toBe(true);
    expect(f.addresses).toContain("inet 10.1.0.11/24");
    expect(f.applied).toEqual(
      new Map([
        ["join-nodes", "abc"],
        ["clock", "0123"],
      ]),
    );
    expect(f.files.get("/etc/lab/pki/node.key")).toEqual({
      sha256: sha256("KEY\n"),
      mode: "600",
      owner: "root:root",
    });
    expect(f.uploads.get("/opt/lab/bin/node")).toEqual({
      mode: "755",
      stat: "99000000 1700000000 4242",
      sidecar: { sha256: "a".repeat(64), stat: "99000000 1700000000 4242" },
    });
    expect(f.units).toEqual(
      new Map([
        ["containerd.service", "active"],
        ["lab-agent.service", "active"],
      ]),
    );
    expect(f.images.has("docker.io/library/pause:3.9")).toBe(true);
  });

  it("skips a node only when the same fingerprint was applied and its result still stands", () => {
    const fp = fingerprintOf("join-nodes", "v1", work());
    expect(staleReason("join-nodes", fp, work(), facts(probeOutput(fp)))).toBeUndefined();
  });

  it("runs the step when it never ran there, or what it would apply differs", () => {
    const fp = fingerprintOf("join-nodes", "v1", work());
    expect(staleReason("etcd", fp, work(), facts(probeOutput(fp)))).toBe("not applied yet");
    expect(staleReason("join-nodes", fp, work(), facts(probeOutput("old")))).toBe("what it applies changed");
  });

  it("runs the step when a file, an upload, a unit or an image drifted, naming it", () => {
    const fp = fingerprintOf("join-nodes", "v1", work());
    const drift = (from: string, to: string) =>
      staleReason("join-nodes", fp, work(), facts(probeOutput(fp).replace(from, to)));
    expect(drift(`${sha256("KEY\n")}  `, `${sha256("edited\n")}  `)).toBe("/etc/lab/pki/node.key changed");
    expect(drift(`${sha256("KEY\n")}  /etc/lab/pki/node.key\n`, "")).toBe("/etc/lab/pki/node.key is missing");
    expect(drift("node.key 600 root:root", "node.key 644 root:root")).toBe(
      "/etc/lab/pki/node.key has mode 644 owner root:root",
    );
    // The runtime was replaced behind lab's back: its stat no longer matches the sidecar.
    expect(
      drift(
        "ustat /opt/lab/bin/node 755 99000000 1700000000 4242",
        "ustat /opt/lab/bin/node 755 99000000 1700000999 4242",
      ),
    ).toBe("/opt/lab/bin/node changed");
    expect(drift(`sidecar /opt/lab/bin/node ${"a".repeat(64)} 99000000 1700000000 4242`, "")).toBe(
      "/opt/lab/bin/node changed",
    );
    expect(drift("ustat /opt/lab/bin/node 755 99000000 1700000000 4242", "")).toBe(
      "/opt/lab/bin/node is missing",
    );
    expect(
      drift("ActiveState=active\nId=lab-agent.service", "ActiveState=inactive\nId=lab-agent.service"),
    ).toBe("lab-agent.service is inactive");
    expect(drift("Id=containerd.service\nActiveState=active\n", "")).toBe("containerd.service is unknown");
    expect(drift("docker.io/library/pause:3.9\n", "")).toBe("image docker.io/library/pause:3.9 is missing");
  });

  it("tells a clock off the lab host's from the time the probe took", () => {
    // The exec ran from t=1000.0 s to t=1000.5 s on the host.
    expect(facts("now 1000").clockOffsetS).toBe(0);
    expect(facts("now 1001").clockOffsetS).toBe(0);
    expect(facts("now 1005").clockOffsetS).toBe(5);
    expect(facts("now 990").clockOffsetS).toBe(-10);
  });
});
