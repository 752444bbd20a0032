import { describe, expect, it } from "vitest";
import { jsonPatch, mergePatch, PatchError, strategicMerge } from "../../../api/patch.ts";

describe("merge patch", () => {
  it("merges maps, deletes with null, replaces lists", () => {
    expect(mergePatch({ a: 1, b: { c: 2, d: 3 }, l: [1, 2] }, { b: { c: null, e: 4 }, l: [3] })).toEqual({
      a: 1,
      b: { d: 3, e: 4 },
      l: [3],
    });
  });
});

describe("JSON patch", () => {
  it("applies add/replace/remove/move/copy/test", () => {
    const doc = { a: [1, 2], b: { c: 1 } };
    const out = jsonPatch(doc, [
      { op: "add", path: "/a/-", value: 3 },
      { op: "replace", path: "/b/c", value: 2 },
      { op: "copy", from: "/b/c", path: "/d" },
      { op: "move", from: "/d", path: "/e" },
      { op: "remove", path: "/a/0" },
      { op: "test", path: "/e", value: 2 },
    ]);
    expect(out).toEqual({ a: [2, 3], b: { c: 2 }, e: 2 });
    expect(doc.a).toEqual([1, 2]);
  });
  it("fails on missing paths and failed tests", () => {
    expect(() => jsonPatch({}, [{ op: "replace", path: "/x", value: 1 }])).toThrow(PatchError);
    expect(() => jsonPatch({ x: 1 }, [{ op: "test", path: "/x", value: 2 }])).toThrow(
      /test operation failed/,
    );
  });
});

describe("strategic merge patch", () => {
  const pod = {
    spec: {
      containers: [
        {
          name: "a",
          image: "a:1",
          env: [
            { name: "X", value: "1" },
            { name: "Y", value: "2" },
          ],
          ports: [{ containerPort: 80 }],
        },
        { name: "b", image: "b:1" },
      ],
      volumes: [{ name: "v", emptyDir: {} }],
      tolerations: [{ key: "t" }],
    },
    metadata: { finalizers: ["f1"] },
  };

  it("merges containers, env and ports by key", () => {
    const out = strategicMerge(pod, {
      spec: {
        containers: [
          { name: "a", image: "a:2", env: [{ name: "Y", value: "3" }], ports: [{ containerPort: 443 }] },
          { name: "c", image: "c:1" },
        ],
      },
    }) as typeof pod;
    expect(out.spec.containers.map((c) => c.name)).toEqual(["a", "b", "c"]);
    expect(out.spec.containers[0]).toMatchObject({
      image: "a:2",
      env: [
        { name: "X", value: "1" },
        { name: "Y", value: "3" },
      ],
      ports: [{ containerPort: 80 }, { containerPort: 443 }],
    });
    expect(out.spec.volumes).toEqual(pod.spec.volumes);
  });

  it("deletes list elements with $patch: delete and honours $setElementOrder", () => {
    const out = strategicMerge(pod, {
      spec: {
        "$setElementOrder/containers": [{ name: "b" }, { name: "a" }],
        containers: [{ name: "a", env: [{ name: "X", $patch: "delete" }] }],
      },
    }) as typeof pod;
    expect(out.spec.containers.map((c) => c.name)).toEqual(["b", "a"]);
    expect(out.spec.containers[1]!.env).toEqual([{ name: "Y", value: "2" }]);
  });

  it("replaces lists without a merge key and merges finalizers as a set", () => {
    const out = strategicMerge(pod, {
      spec: { tolerations: [{ key: "u" }] },
      metadata: { finalizers: ["f1", "f2"] },
    }) as typeof pod;
    expect(out.spec.tolerations).toEqual([{ key: "u" }]);
    expect(out.metadata.finalizers).toEqual(["f1", "f2"]);
    const removed = strategicMerge(out, {
      metadata: { "$deleteFromPrimitiveList/finalizers": ["f1"] },
    }) as typeof pod;
    expect(removed.metadata.finalizers).toEqual(["f2"]);
  });

  it("removes fields with null and keeps $retainKeys only", () => {
    const out = strategicMerge(
      { strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: 1 } } },
      { strategy: { $retainKeys: ["type"], type: "Recreate", rollingUpdate: null } },
    );
    expect(out).toEqual({ strategy: { type: "Recreate" } });
  });
});
