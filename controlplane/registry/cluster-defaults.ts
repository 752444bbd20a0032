import { RESOURCES } from "../../api/resources.ts";
import { ApiError } from "../../api/status.ts";
import type { ServiceIpAllocator } from "../service-ips.ts";
import { SYSTEM_NAMESPACES, type KObject } from "./types.ts";
import type { Registry } from "./store.ts";

const kind = (k: string) => RESOURCES.find((r) => r.kind === k)!;

function ignore(...reasons: string[]): (err: unknown) => void {
  return (err) => {
    if (!(err instanceof ApiError && reasons.includes(err.reason))) throw err;
  };
}

/**
 * kube-system/kube-dns on the tenth service address, as clusters conventionally have it. It has
 * no selector and no Endpoints: every lab-agent answers DNS itself and DNATs this address to its
 * own listener, so the Service is there for discovery (`kubectl get svc -n kube-system`) and to
 * keep the address from being handed to another Service.
 */
async function ensureClusterDnsService(registry: Registry, ip: string | undefined): Promise<void> {
  if (!ip) return;
  await registry
    .create(kind("Service"), "kube-system", {
      apiVersion: "v1",
      kind: "Service",
      metadata: {
        name: "kube-dns",
        labels: {
          "k8s-app": "kube-dns",
          "kubernetes.io/cluster-service": "true",
          "kubernetes.io/name": "KubeDNS",
        },
      },
      spec: {
        clusterIP: ip,
        ports: [
          { name: "dns", port: 53, protocol: "UDP", targetPort: 53 },
          { name: "dns-tcp", port: 53, protocol: "TCP", targetPort: 53 },
        ],
      },
    })
    .catch(ignore("AlreadyExists", "Invalid"));
}

/** This apiserver's address in default/kubernetes Endpoints, beside the other masters'. */
async function ensureKubernetesEndpoints(registry: Registry, address: string, port: number): Promise<void> {
  const info = kind("Endpoints");
  const withMe = (ep: KObject): KObject => {
    const subsets = (ep.subsets as { addresses?: { ip: string }[] }[] | undefined) ?? [];
    const addresses = subsets[0]?.addresses ?? [];
    if (addresses.some((a) => a.ip === address)) return ep;
    ep.subsets = [
      { addresses: [...addresses, { ip: address }], ports: [{ name: "https", port, protocol: "TCP" }] },
    ];
    return ep;
  };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await registry.guaranteedUpdate(info, "default", "kubernetes", withMe);
      return;
    } catch (err) {
      if (!(err instanceof ApiError && err.reason === "NotFound")) throw err;
    }
    try {
      await registry.create(
        info,
        "default",
        withMe({ apiVersion: "v1", kind: "Endpoints", metadata: { name: "kubernetes" } }),
      );
      return;
    } catch (err) {
      // Another master created it between our read and our create: update that one.
      ignore("AlreadyExists")(err);
    }
  }
}

/** Default namespaces, the `kubernetes` service and the cluster DNS service, idempotently. */
export async function ensureClusterDefaults(
  registry: Registry,
  serviceIps: ServiceIpAllocator,
  advertiseAddress: string,
  securePort: number,
): Promise<void> {
  for (const ns of SYSTEM_NAMESPACES) {
    await registry
      .create(kind("Namespace"), undefined, { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } })
      .catch(ignore("AlreadyExists"));
  }
  await registry
    .create(kind("Service"), "default", {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "kubernetes", labels: { component: "apiserver", provider: "kubernetes" } },
      spec: {
        clusterIP: serviceIps.kubernetesServiceIp,
        ports: [{ name: "https", port: 443, protocol: "TCP", targetPort: securePort }],
      },
    })
    .catch(ignore("AlreadyExists", "Invalid"));
  await ensureClusterDnsService(registry, serviceIps.dnsServiceIp);
  await ensureKubernetesEndpoints(registry, advertiseAddress, securePort);
}
