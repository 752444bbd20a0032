import { describe, expect, it } from "vitest";
import { applyDefaults } from "../../../api/defaults.ts";
import { validateObject } from "../../../api/validation.ts";

describe("defaulting", () => {
  it("defaults pods like Kubernetes", () => {
    const pod = {
      metadata: { name: "p" },
      spec: {
        containers: [
          { name: "c", image: "nginx:1.25", ports: [{ containerPort: 80 }] },
          { name: "d", image: "busybox" },
        ],
      },
    } as Record<string, unknown>;
    applyDefaults("Pod", pod);
    expect(pod).toMatchObject({
      spec: {
        restartPolicy: "Always",
        dnsPolicy: "ClusterFirst",
        terminationGracePeriodSeconds: 30,
        containers: [
          {
            imagePullPolicy: "IfNotPresent",
            terminationMessagePath: "/dev/termination-log",
            ports: [{ protocol: "TCP" }],
          },
          { imagePullPolicy: "Always" },
        ],
      },
      status: { phase: "Pending" },
    });
  });
  it("defaults service targetPort and deployment strategy", () => {
    const svc = { spec: { ports: [{ port: 80 }] } } as Record<string, unknown>;
    applyDefaults("Service", svc);
    expect(svc).toMatchObject({
      spec: { type: "ClusterIP", ports: [{ port: 80, targetPort: 80, protocol: "TCP" }] },
    });
    const d = { spec: { template: { spec: { containers: [] } } } } as Record<string, unknown>;
    applyDefaults("Deployment", d);
    expect(d).toMatchObject({
      spec: {
        replicas: 1,
        strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: "25%", maxUnavailable: "25%" } },
      },
    });
  });
});

describe("validation", () => {
  it("lists every problem as a field cause", () => {
    const causes = validateObject(
      "Pod",
      {
        metadata: { name: "Bad_Name", labels: { "a b": "x" } },
        spec: { containers: [{ name: "c" }, { name: "c", image: "x" }] },
      },
      true,
    );
    expect(causes.map((c) => c.field)).toEqual([
      "metadata.name",
      "metadata.labels",
      "spec.containers[0].image",
      "spec.containers[1].name",
    ]);
  });
  it("needs a selector matching the template in deployments", () => {
    const causes = validateObject(
      "Deployment",
      {
        metadata: { name: "d" },
        spec: {
          selector: { matchLabels: { app: "x" } },
          template: { metadata: { labels: { app: "y" } }, spec: { containers: [{ name: "c", image: "i" }] } },
        },
      },
      true,
    );
    expect(causes.map((c) => c.field)).toEqual(["spec.template.metadata.labels"]);
  });
  it("uses DNS-1123 labels for namespaces and services", () => {
    expect(validateObject("Namespace", { metadata: { name: "a.b" } }, false)).toHaveLength(1);
    expect(validateObject("ConfigMap", { metadata: { name: "a.b" }, data: { k: "v" } }, true)).toHaveLength(
      0,
    );
  });
});
