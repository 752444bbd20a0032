import type { V1Pod, V1Service } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { envRecord } from "../../helpers/container-env.ts";
import {
  containerConfig,
  containerResources,
  expandVars,
  podDnsConfig,
  sandboxConfig,
  serviceEnv,
} from "../../../node/container-config.ts";
import { cpuMillis, memoryBytes } from "../../../lib/quantity.ts";
import { gatewayOf, renderCniConfig, renderContainerdConfig } from "../../../templates/containerd-config.ts";

const svc = (
  name: string,
  clusterIP: string,
  ports: { port: number; name?: string; protocol?: string }[],
  namespace = "default",
): V1Service => ({
  metadata: { name, namespace },
  spec: { clusterIP, ports },
});

const pod: V1Pod = {
  metadata: { name: "web-1", namespace: "default", uid: "u1", labels: { app: "web" } },
  spec: {
    terminationGracePeriodSeconds: 5,
    containers: [
      {
        name: "web",
        image: "lab/sample",
        command: ["/bin/sh", "-c"],
        args: ["echo $(GREETING) $$(LITERAL) $(MISSING)"],
        workingDir: "/tmp",
        ports: [{ containerPort: 8080, hostPort: 30080 }],
        env: [
          { name: "NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
          { name: "IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
          { name: "GREETING", value: "hello-$(NAME)" },
          { name: "API_SERVICE_HOST", value: "overridden" },
        ],
      },
    ],
  },
};

describe("quantities", () => {
  it("parses CPU into millicores and memory into bytes", () => {
    expect([cpuMillis("500m"), cpuMillis("1"), cpuMillis("0.25"), cpuMillis(2), cpuMillis("1e-1")]).toEqual([
      500, 1000, 250, 2000, 100,
    ]);
    expect([memoryBytes("64Mi"), memoryBytes("1G"), memoryBytes("128974848"), memoryBytes("1.5Ki")]).toEqual([
      64 * 2 ** 20,
      1e9,
      128974848,
      1536,
    ]);
    expect(cpuMillis("lots")).toBeUndefined();
  });
});

describe("containerResources", () => {
  it("maps a CPU limit to a CFS quota and the request to shares, and the memory limit", () => {
    expect(containerResources({ name: "a", resources: { limits: { cpu: "500m", memory: "64Mi" } } })).toEqual(
      {
        cpuPeriod: 100_000,
        cpuQuota: 50_000,
        cpuShares: 512,
        memoryLimitInBytes: 64 * 2 ** 20,
      },
    );
    expect(containerResources({ name: "a", resources: { requests: { cpu: "250m" } } })).toEqual({
      cpuPeriod: 0,
      cpuQuota: 0,
      cpuShares: 256,
      memoryLimitInBytes: 0,
    });
    expect(containerResources({ name: "a" }).cpuShares).toBe(2);
  });
});

describe("serviceEnv", () => {
  it("gives the kubelet's variables for services of the pod's namespace only", () => {
    const env = envRecord(
      serviceEnv(
        [
          svc("my-db", "10.96.0.10", [{ port: 5432, name: "pg" }]),
          svc("other", "10.96.0.11", [{ port: 80 }], "kube-system"),
          svc("headless", "None", [{ port: 1 }]),
        ],
        "default",
      ),
    );
    expect(env).toEqual({
      MY_DB_SERVICE_HOST: "10.96.0.10",
      MY_DB_SERVICE_PORT: "5432",
      MY_DB_SERVICE_PORT_PG: "5432",
      MY_DB_PORT: "tcp://10.96.0.10:5432",
      MY_DB_PORT_5432_TCP: "tcp://10.96.0.10:5432",
      MY_DB_PORT_5432_TCP_PROTO: "tcp",
      MY_DB_PORT_5432_TCP_PORT: "5432",
      MY_DB_PORT_5432_TCP_ADDR: "10.96.0.10",
    });
  });
});

describe("expandVars", () => {
  it("expands $(VAR), keeps unknown ones and unescapes $$", () => {
    expect(expandVars("a $(X) $$(X) $(Y)", new Map([["X", "1"]]))).toBe("a 1 $(X) $(Y)");
  });
});

describe("containerConfig", () => {
  it("carries command, args, env (fieldRef, expansion, spec over services), workingDir and labels", () => {
    const cfg = containerConfig(
      pod,
      pod.spec!.containers[0]!,
      2,
      [svc("api", "10.96.0.1", [{ port: 443 }])],
      { podIP: "10.1.0.9" },
    );
    expect(cfg.metadata).toEqual({ name: "web", attempt: 2 });
    expect(cfg.command).toEqual(["/bin/sh", "-c"]);
    expect(cfg.args).toEqual(["echo hello-web-1 $(LITERAL) $(MISSING)"]);
    expect(cfg.workingDir).toBe("/tmp");
    const env = envRecord(cfg.envs);
    expect(env).toMatchObject({
      NAME: "web-1",
      IP: "10.1.0.9",
      GREETING: "hello-web-1",
      API_SERVICE_HOST: "overridden",
      API_SERVICE_PORT: "443",
    });
    expect(cfg.labels["lab.io/pod-uid"]).toBe("u1");
    expect(cfg.logPath).toBe("web/2.log");
  });

  it("sandbox config: hostname, pod cgroup, host ports, labels and grace period", () => {
    const sb = sandboxConfig(pod, 1, { cgroupRoot: "/lab-pods", logRoot: "/var/log/pods" });
    expect(sb.hostname).toBe("web-1");
    expect(sb.metadata).toEqual({ name: "web-1", uid: "u1", namespace: "default", attempt: 1 });
    expect(sb.linux.cgroupParent).toBe("/lab-pods/podu1");
    expect(sb.logDirectory).toBe("/var/log/pods/default_web-1_u1");
    expect(sb.portMappings).toEqual([{ protocol: "TCP", containerPort: 8080, hostPort: 30080, hostIp: "" }]);
    expect(sb.labels).toMatchObject({ app: "web", "lab.io/managed-by": "lab-agent" });
    expect(sb.annotations["lab.io/termination-grace-period"]).toBe("5");
  });
});

describe("containerd and CNI config", () => {
  it("renders containerd's config with the facts this host needs", () => {
    const toml = renderContainerdConfig({
      root: "/r",
      state: "/s",
      socket: "/s/c.sock",
      cniConfDir: "/etc/cni/net.d",
      sandboxImage: "docker.io/lab/pause:1",
    });
    expect(toml).toContain("restrict_oom_score_adj = true");
    expect(toml).toContain('bin_dir = "/usr/lib/cni"');
    expect(toml).toContain('BinaryName = "runc"');
    expect(toml).toContain('sandbox_image = "docker.io/lab/pause:1"');
    expect(toml).toContain('address = "/s/c.sock"');
  });

  it("renders a bridge + host-local conflist on the node's pod CIDR", () => {
    const conf = JSON.parse(renderCniConfig({ podCidr: "10.244.3.0/24" }));
    expect(conf.plugins[0]).toMatchObject({
      type: "bridge",
      isGateway: true,
      ipam: { type: "host-local", ranges: [[{ subnet: "10.244.3.0/24", gateway: "10.244.3.1" }]] },
    });
    expect(gatewayOf("10.244.3.0/24")).toBe("10.244.3.1");
  });
});

describe("podDnsConfig", () => {
  const dns = { servers: ["10.96.0.10"], clusterDomain: "cluster.local" };
  const p = (spec: Partial<V1Pod["spec"]>): V1Pod => ({
    metadata: { name: "x", namespace: "shop" },
    spec: { containers: [], ...spec },
  });

  it("ClusterFirst: cluster nameserver, namespace search domains, ndots:5", () => {
    expect(podDnsConfig(p({}), dns)).toEqual({
      servers: ["10.96.0.10"],
      searches: ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local"],
      options: ["ndots:5"],
    });
  });

  it("Default keeps the node's resolv.conf; None uses only the pod's dnsConfig", () => {
    expect(podDnsConfig(p({ dnsPolicy: "Default" }), dns)).toBeUndefined();
    expect(
      podDnsConfig(
        p({
          dnsPolicy: "None",
          dnsConfig: { nameservers: ["1.2.3.4"], options: [{ name: "ndots", value: "2" }] },
        }),
        dns,
      ),
    ).toEqual({
      servers: ["1.2.3.4"],
      searches: [],
      options: ["ndots:2"],
    });
    expect(podDnsConfig(p({ hostNetwork: true }), dns)).toBeUndefined();
  });
});
