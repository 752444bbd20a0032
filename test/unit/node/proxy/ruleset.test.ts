import type { V1Endpoints, V1Service } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { renderRuleset, serviceRules } from "../../../../node/proxy/ruleset.ts";

const svc = (name: string, spec: V1Service["spec"]): V1Service => ({
  metadata: { name, namespace: "default" },
  spec,
});
const eps = (name: string, subsets: V1Endpoints["subsets"]): V1Endpoints => ({
  metadata: { name, namespace: "default" },
  subsets,
});

describe("serviceRules", () => {
  it("uses ready addresses only, matches ports by name, and sorts stably", () => {
    const rules = serviceRules(
      [
        svc("web", {
          clusterIP: "10.96.0.20",
          ports: [
            { name: "http", port: 80 },
            { name: "admin", port: 9000 },
          ],
        }),
        svc("api", { type: "NodePort", clusterIP: "10.96.0.21", ports: [{ port: 443, nodePort: 30443 }] }),
      ],
      [
        eps("web", [
          {
            addresses: [{ ip: "10.1.0.9" }, { ip: "10.1.0.3" }],
            notReadyAddresses: [{ ip: "10.1.0.4" }],
            ports: [
              { name: "admin", port: 9090 },
              { name: "http", port: 8080 },
            ],
          },
        ]),
        eps("api", [{ addresses: [{ ip: "10.2.0.1" }], ports: [{ port: 8443 }] }]),
      ],
    );
    // Both of web's ports go to its two ready addresses, sorted.
    const webRule = (portName: string, port: number, targetPort: number) => ({
      id: `default/web:${portName}`,
      protocol: "tcp",
      clusterIP: "10.96.0.20",
      port,
      backends: [
        { ip: "10.1.0.3", port: targetPort },
        { ip: "10.1.0.9", port: targetPort },
      ],
    });
    expect(rules).toEqual([
      {
        id: "default/api:443",
        protocol: "tcp",
        clusterIP: "10.96.0.21",
        port: 443,
        nodePort: 30443,
        backends: [{ ip: "10.2.0.1", port: 8443 }],
      },
      webRule("admin", 9000, 9090),
      webRule("http", 80, 8080),
    ]);
  });

  it("skips headless services and ignores nodePort on ClusterIP services", () => {
    const rules = serviceRules(
      [
        svc("h", { clusterIP: "None", ports: [{ port: 80 }] }),
        svc("c", { clusterIP: "10.96.0.5", ports: [{ port: 80, nodePort: 30001 }] }),
      ],
      [],
    );
    expect(rules).toEqual([
      { id: "default/c:80", protocol: "tcp", clusterIP: "10.96.0.5", port: 80, backends: [] },
    ]);
  });
});

describe("renderRuleset", () => {
  it("replaces the whole table in one transaction and balances with numgen", () => {
    const text = renderRuleset([
      {
        id: "default/web:http",
        protocol: "tcp",
        clusterIP: "10.96.0.20",
        port: 80,
        nodePort: 30080,
        backends: [
          { ip: "10.1.0.3", port: 8080 },
          { ip: "10.1.0.9", port: 8080 },
        ],
      },
    ]);
    expect(text.indexOf("delete table ip lab_proxy")).toBeLessThan(text.indexOf("table ip lab_proxy {"));
    expect(text).toMatch(/ip daddr 10\.96\.0\.20 tcp dport 80 jump svc_[0-9a-f]{12}/);
    expect(text).toMatch(/numgen random mod 2 vmap \{ 0 : jump svc_\w+_0, 1 : jump svc_\w+_1 \}/);
    expect(text).toContain("meta l4proto tcp dnat to 10.1.0.9:8080");
    expect(text).toMatch(/tcp dport 30080 meta mark set 0x4000 jump svc_/);
  });

  it("renders no redirect for a service without ready endpoints", () => {
    const text = renderRuleset([
      { id: "default/x:80", protocol: "tcp", clusterIP: "10.96.0.9", port: 80, backends: [] },
    ]);
    expect(text).not.toContain("10.96.0.9");
  });

  it("sends cluster DNS (UDP and TCP port 53) to the node's own listener, ahead of any service rule", () => {
    const text = renderRuleset(
      [{ id: "kube-system/kube-dns:dns", protocol: "udp", clusterIP: "10.96.0.10", port: 53, backends: [] }],
      { clusterIPs: ["10.96.0.10"], address: "192.168.50.11", port: 10053 },
    );
    const services = text.slice(text.indexOf("chain services {"), text.indexOf("chain nodeports {"));
    expect(services).toContain("ip daddr 10.96.0.10 udp dport 53 dnat to 192.168.50.11:10053");
    expect(services).toContain("ip daddr 10.96.0.10 tcp dport 53 dnat to 192.168.50.11:10053");
    expect(renderRuleset([])).not.toContain("dport 53");
  });
});
