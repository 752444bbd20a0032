import { describe, expect, it } from "vitest";
import { archiveKind, importedImages, parseNodeList, selectMachines } from "../../../bootstrap/image-load.ts";
import type { Machine } from "../../../provisioners/provisioner.ts";

const m = (name: string): Machine => ({
  name,
  role: "worker",
  address: "10.0.0.1",
  ssh: { host: "10.0.0.1", port: 22, user: "root", privateKeyPath: "/k", hostKey: "" },
});

describe("lab image load arguments", () => {
  it("--nodes is a comma list, blanks and repeats dropped", () => {
    expect(parseNodeList(undefined)).toEqual([]);
    expect(parseNodeList(" a, b,,a ")).toEqual(["a", "b"]);
  });

  it("loads into every node by default, exactly the listed ones otherwise, and names unknown nodes", () => {
    const all = [m("master-1"), m("worker-1"), m("worker-2")];
    expect(selectMachines(all, [], "lab1").map((x) => x.name)).toEqual(["master-1", "worker-1", "worker-2"]);
    expect(selectMachines(all, ["worker-2"], "lab1").map((x) => x.name)).toEqual(["worker-2"]);
    expect(() => selectMachines(all, ["worker-9", "worker-1"], "lab1")).toThrow(
      /lab lab1 has no node "worker-9"/,
    );
    expect(() => selectMachines([], [], "lab1")).toThrow(/has no machines/);
  });

  it("tells OCI and docker archives from other tar files", () => {
    expect(archiveKind(["oci-layout", "index.json", "blobs/sha256/ab"])).toBe("oci");
    expect(archiveKind(["./manifest.json", "abc/layer.tar"])).toBe("docker");
    expect(archiveKind(["etc/passwd"])).toBeUndefined();
  });

  it("reads the imported image names from ctr's output", () => {
    const out =
      "unpacking docker.io/lab/x:v1 (sha256:0123)...done\nunpacking docker.io/lab/y:v2 (sha256:4567)...done\n";
    expect(importedImages(out)).toEqual(["docker.io/lab/x:v1", "docker.io/lab/y:v2"]);
  });
});
