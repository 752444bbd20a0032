import { describe, expect, it } from "vitest";
import { RESOURCES } from "../../../../api/resources.ts";
import {
  applyConfig,
  ApplyConflict,
  managedFieldsAfterWrite,
} from "../../../../controlplane/registry/apply/index.ts";
import { FieldSet, renderPath } from "../../../../controlplane/registry/apply/fieldset.ts";
import type { KObject } from "../../../../controlplane/registry/types.ts";
import { duplicateFields, unknownFields } from "../../../../controlplane/server/field-validation.ts";

/** Objects walked by path in the assertions. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any object shape
type Json = any;

const kind = (k: string) => RESOURCES.find((r) => r.kind === k)!;
const deploy = kind("Deployment");
const cm = kind("ConfigMap");

function deployment(containers: unknown[], replicas?: number): KObject {
  const spec: Record<string, unknown> = {
    selector: { matchLabels: { app: "a" } },
    template: { metadata: { labels: { app: "a" } }, spec: { containers } },
  };
  if (replicas !== undefined) spec.replicas = replicas;
  return { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "d" }, spec };
}

type Entry = { manager: string; operation: string; fieldsV1: Record<string, unknown> };
const entries = (o: KObject): Entry[] => (o.metadata.managedFields ?? []) as Entry[];

describe("FieldSet", () => {
  it("round-trips FieldsV1 with `.` for members that have children", () => {
    const v1 = { "f:data": { ".": {}, "f:a": {} }, "f:spec": { "f:x": {} } };
    const set = FieldSet.fromFieldsV1(v1);
    expect(set.toFieldsV1()).toEqual(v1);
    expect(set.paths().map(renderPath)).toEqual([".data", ".data.a", ".spec.x"]);
  });

  it("prints list items the way upstream's conflicts do", () => {
    expect(renderPath(["f:spec", 'k:{"name":"app"}', "f:image"])).toBe('.spec[name="app"].image');
    expect(renderPath(["f:finalizers", 'v:"x"'])).toBe('.finalizers[="x"]');
  });
});

describe("managedFields of ordinary writes", () => {
  it("create: the writer owns every field it set, map-lists by key, atomic lists whole; identity is no one's", () => {
    const obj = deployment([{ name: "c", image: "x", ports: [{ containerPort: 80 }], args: ["a"] }], 2);
    const mf = managedFieldsAfterWrite(deploy, undefined, obj, {
      operation: "Update",
      manager: "kubectl-create",
    })!;
    expect(mf).toHaveLength(1);
    expect(mf[0]).toMatchObject({ manager: "kubectl-create", operation: "Update", apiVersion: "apps/v1" });
    const f = mf[0]!.fieldsV1 as Record<string, Record<string, unknown>>;
    expect(f["f:metadata"]).toBeUndefined();
    const c = (f["f:spec"] as Record<string, Json>)["f:template"]["f:spec"]["f:containers"]['k:{"name":"c"}'];
    expect(c).toEqual({
      ".": {},
      "f:name": {},
      "f:image": {},
      "f:args": {},
      // the key's default (TCP) is part of the key, as upstream defaults key fields
      "f:ports": { 'k:{"containerPort":80,"protocol":"TCP"}': { ".": {}, "f:containerPort": {} } },
    });
    // the selector is an atomic map
    expect((f["f:spec"] as Record<string, unknown>)["f:selector"]).toEqual({});
  });

  it("update: the writer takes what it changed from the others; removed fields leave every entry", () => {
    const a = {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "c" },
      data: { x: "1", y: "2" },
    } as KObject;
    a.metadata.managedFields = managedFieldsAfterWrite(cm, undefined, a, {
      operation: "Update",
      manager: "one",
    });
    const b = structuredClone(a);
    b.data = { x: "9" };
    const mf = managedFieldsAfterWrite(cm, a, b, { operation: "Update", manager: "two" })!;
    expect(mf.map((e) => [e.manager, e.fieldsV1])).toEqual([
      // y is gone and x is two's: one keeps only the data map it created
      ["one", { "f:data": {} }],
      ["two", { "f:data": { "f:x": {} } }],
    ]);
    // no manager: the entries stay as they were
    expect(managedFieldsAfterWrite(cm, a, b, undefined)).toEqual(a.metadata.managedFields);
  });
});

describe("applyConfig", () => {
  const fm = (manager: string) => ({ manager });

  it("owns exactly what was applied, conflicts on another owner's changed value, shares an equal one", () => {
    const first = applyConfig(deploy, undefined, deployment([{ name: "c", image: "x" }], 1), fm("a"), false);
    expect(entries(first).map((e) => `${e.manager}/${e.operation}`)).toEqual(["a/Apply"]);
    // an equal value is no conflict: both own it
    const shared = applyConfig(deploy, first, deployment([{ name: "c", image: "x" }], 1), fm("b"), false);
    expect(entries(shared).map((e) => e.manager)).toEqual(["a", "b"]);
    let err: unknown;
    try {
      applyConfig(deploy, shared, deployment([{ name: "c", image: "y" }], 3), fm("b"), false);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ApplyConflict);
    expect((err as ApplyConflict).code).toBe(409);
    expect((err as ApplyConflict).message).toBe(
      'Apply failed with 2 conflicts: conflicts with "a" using apps/v1:\n' +
        "- .spec.replicas\n" +
        '- .spec.template.spec.containers[name="c"].image',
    );
    const forced = applyConfig(deploy, shared, deployment([{ name: "c", image: "y" }], 3), fm("b"), true);
    expect((forced.spec as Record<string, unknown>).replicas).toBe(3);
    const a = entries(forced).find((e) => e.manager === "a")!;
    expect(JSON.stringify(a.fieldsV1)).not.toContain("f:replicas");
    expect(JSON.stringify(a.fieldsV1)).not.toContain("f:image");
  });

  it("merges containers by name and removes what the applier no longer applies", () => {
    const a = applyConfig(deploy, undefined, deployment([{ name: "main", image: "x" }]), fm("a"), false);
    const b = applyConfig(deploy, a, deployment([{ name: "side", image: "s" }]), fm("b"), false);
    const names = (o: KObject) =>
      ((o.spec as Json).template.spec.containers as { name: string }[]).map((c) => c.name);
    expect(names(b)).toEqual(["main", "side"]);
    const bGone = applyConfig(
      deploy,
      b,
      { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "d" } },
      fm("b"),
      false,
    );
    expect(names(bGone)).toEqual(["main"]);
    expect(entries(bGone).map((e) => e.manager)).toEqual(["a"]);
  });

  it("on status owns only status; on the object never status", () => {
    const base = applyConfig(deploy, undefined, deployment([{ name: "c", image: "x" }]), fm("a"), false);
    const cfg = { ...deployment([{ name: "c", image: "other" }]), status: { replicas: 4 } } as KObject;
    const st = applyConfig(deploy, base, cfg, { manager: "ctl", subresource: "status" }, false);
    expect(st.status).toEqual({ replicas: 4 });
    expect((st.spec as Json).template.spec.containers[0].image).toBe("x");
    expect(entries(st).find((e) => e.manager === "ctl")).toMatchObject({
      subresource: "status",
      fieldsV1: { "f:status": { "f:replicas": {} } },
    });
    const main = applyConfig(deploy, undefined, cfg, fm("m"), false);
    expect(main.status).toBeUndefined();
  });
});

describe("field validation", () => {
  it("finds unknown fields by path, through lists, maps and metadata", () => {
    const obj = deployment([{ name: "c", image: "x", bogus: 1 }]) as Record<string, Json>;
    obj.spec.foo = 1;
    obj.metadata.labels = { anything: "goes" };
    obj.metadata.nope = true;
    expect(unknownFields(deploy, obj).sort()).toEqual([
      "metadata.nope",
      "spec.foo",
      "spec.template.spec.containers[0].bogus",
    ]);
    expect(unknownFields(cm, { data: { a: "1" }, binaryData: {} })).toEqual([]);
  });

  it("finds keys a JSON text repeats, with their paths", () => {
    expect(duplicateFields('{"a":1,"b":{"c":1,"c":2},"l":[{"x":1},{"x":1,"x":2}],"a":"\\"a\\""}')).toEqual([
      "b.c",
      "l[1].x",
      "a",
    ]);
    expect(duplicateFields('{"a":"a,a","b":["a","a"]}')).toEqual([]);
  });
});
