import { describe, expect, it } from "vitest";
import { applyDefaults } from "../../../../api/defaults.ts";
import { RESOURCES } from "../../../../api/resources.ts";
import type { KObject } from "../../../../controlplane/registry.ts";
import type { StrategyContext } from "../../../../controlplane/registry/strategy.ts";
import { strategyFor } from "../../../../controlplane/registry/strategies/index.ts";
import { NamespaceStrategy } from "../../../../controlplane/registry/strategies/namespace.ts";
import { PodStrategy } from "../../../../controlplane/registry/strategies/pod.ts";
import { SecretStrategy } from "../../../../controlplane/registry/strategies/secret.ts";
import { ServiceStrategy } from "../../../../controlplane/registry/strategies/service.ts";

const info = (kind: string) => RESOURCES.find((r) => r.kind === kind)!;
// The pure hooks under test never reach storage; the store-backed ones run in test/integration/registry-store.test.ts.
const ctx = {} as StrategyContext;

describe("strategyFor", () => {
  it("gives the kinds with hooks their own strategy and the rest the base one", () => {
    expect(strategyFor(info("Pod"), ctx)).toBeInstanceOf(PodStrategy);
    expect(strategyFor(info("Service"), ctx)).toBeInstanceOf(ServiceStrategy);
    expect(strategyFor(info("Namespace"), ctx)).toBeInstanceOf(NamespaceStrategy);
    expect(strategyFor(info("Secret"), ctx)).toBeInstanceOf(SecretStrategy);
    const cm = strategyFor(info("ConfigMap"), ctx);
    expect(cm.constructor.name).toBe("Strategy");
    expect(cm.bumpsGeneration).toBe(false);
    expect(strategyFor(info("Deployment"), ctx).bumpsGeneration).toBe(true);
  });

  it("validates updates with the kind's update rules", () => {
    const d = strategyFor(info("Deployment"), ctx);
    const dep = (app: string): KObject => ({
      metadata: { name: "d" },
      spec: {
        selector: { matchLabels: { app } },
        template: { metadata: { labels: { app } }, spec: { containers: [{ name: "c", image: "i" }] } },
      },
    });
    expect(d.validate(dep("a"))).toEqual([]);
    expect(d.validateUpdate(dep("b"), dep("a")).map((c) => c.field)).toEqual(["spec.selector"]);
  });
});

describe("PodStrategy", () => {
  const s = new PodStrategy(info("Pod"));
  // As stored: defaulted.
  const pod = (spec: Record<string, unknown>, meta: Record<string, unknown> = {}): KObject => {
    const p: KObject = {
      metadata: { name: "p", ...meta },
      spec: { containers: [{ name: "c", image: "a:1" }], ...spec },
    };
    applyDefaults("Pod", p);
    return p;
  };

  it("clears a new pod's status", () => {
    const p: KObject = { ...pod({}), status: { phase: "Running" } };
    s.prepareForCreate(p);
    expect(p.status).toEqual({});
  });

  it("lets an update change images and tolerations only, and binding set nodeName once", () => {
    const old = pod({});
    expect(() =>
      s.prepareForUpdate(pod({ containers: [{ name: "c", image: "a:2" }] }), old, "main"),
    ).not.toThrow();
    expect(() =>
      s.prepareForUpdate(pod({ tolerations: [{ operator: "Exists" }] }), old, "main"),
    ).not.toThrow();
    expect(() =>
      s.prepareForUpdate(pod({ containers: [{ name: "c", image: "a:1", args: ["x"] }] }), old, "main"),
    ).toThrow(/pod updates may not change fields other than/);
    expect(() => s.prepareForUpdate(pod({ nodeName: "n1" }), old, "main")).toThrow(/may not change/);
    expect(() => s.prepareForUpdate(pod({ nodeName: "n1" }), old, "binding")).not.toThrow();
    expect(() => s.prepareForUpdate(pod({ nodeName: "n2" }), pod({ nodeName: "n1" }), "binding")).toThrow();
    expect(() => s.prepareForUpdate(pod({ nodeName: "n2" }), old, "status")).not.toThrow();
  });

  it("waits the grace period only for a pod that has containers to stop", () => {
    expect(s.gracePeriod(pod({ nodeName: "n1" }), {})).toBe(30);
    expect(s.gracePeriod(pod({ nodeName: "n1", terminationGracePeriodSeconds: 5 }), {})).toBe(5);
    expect(s.gracePeriod(pod({ nodeName: "n1" }), { gracePeriodSeconds: 0 })).toBe(0);
    expect(s.gracePeriod(pod({}), {})).toBe(0);
    expect(s.gracePeriod({ ...pod({ nodeName: "n1" }), status: { phase: "Succeeded" } }, {})).toBe(0);
    const terminating = pod({ nodeName: "n1" }, { deletionGracePeriodSeconds: 10 });
    expect(s.gracePeriod(terminating, { gracePeriodSeconds: 20 })).toBe("unchanged");
    expect(s.gracePeriod(terminating, { gracePeriodSeconds: 3 })).toBe(3);
    expect(s.waitsAfterFinalizers(terminating)).toBe(true);
  });
});

describe("SecretStrategy", () => {
  it("merges stringData into data as base64, stringData winning", () => {
    const s = new SecretStrategy(info("Secret"));
    const secret: KObject = {
      metadata: { name: "s" },
      data: { a: "eA==", b: "eQ==" },
      stringData: { b: "two" },
    };
    s.prepareForCreate(secret);
    expect(secret).toEqual({
      metadata: { name: "s" },
      data: { a: "eA==", b: Buffer.from("two").toString("base64") },
    });
    const bad: KObject = { metadata: { name: "s" }, stringData: { b: 2 } };
    s.prepareForUpdate(bad);
    expect(bad.stringData).toEqual({ b: 2 }); // left for validation to name
  });
});

describe("ServiceStrategy", () => {
  it("keeps the cluster IP on update and refuses changing it", () => {
    const s = new ServiceStrategy(info("Service"), ctx);
    const old: KObject = {
      metadata: { name: "w" },
      spec: { clusterIP: "10.96.0.5", clusterIPs: ["10.96.0.5"], ipFamilyPolicy: "SingleStack" },
    };
    const next: KObject = { metadata: { name: "w" }, spec: { ports: [{ port: 80 }] } };
    s.prepareForUpdate(next, old);
    expect(next.spec).toMatchObject({
      clusterIP: "10.96.0.5",
      clusterIPs: ["10.96.0.5"],
      ipFamilyPolicy: "SingleStack",
    });
    expect(() =>
      s.prepareForUpdate({ metadata: { name: "w" }, spec: { clusterIP: "10.96.0.9" } }, old),
    ).toThrow(/spec.clusterIP: Invalid value: "10.96.0.9": field is immutable/);
  });
});
