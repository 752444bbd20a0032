/**
 * The EndpointSlices of a Service, derived from its Endpoints (pure): one IPv4 slice per subset
 * (each subset is one set of ports), ready addresses `ready`/`serving`, not-ready ones neither, and
 * an empty slice when the Service selects no pod yet, as upstream's EndpointSlice controller keeps
 * a placeholder. Names are stable (`<service>-<hash of the ports>`), so reconciling twice changes
 * nothing; clients find slices by the `kubernetes.io/service-name` label, never by name.
 */
import { createHash } from "node:crypto";
import type {
  DiscoveryV1EndpointPort,
  V1EndpointAddress,
  V1Endpoints,
  V1EndpointSlice,
  V1Service,
} from "@kubernetes/client-node";
import { stableStringify as stableJson } from "../../lib/stable-json.ts";

export const SERVICE_NAME_LABEL = "kubernetes.io/service-name";
export const MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by";
export const MANAGED_BY = "endpointslice-controller.k8s.io";
/** Upstream's limit of endpoints per slice. */
export const MAX_ENDPOINTS_PER_SLICE = 100;

function sliceName(service: string, ports: DiscoveryV1EndpointPort[], part: number): string {
  const hash = createHash("sha256").update(stableJson(ports)).digest("hex").slice(0, 5);
  const suffix = `-${hash}${part ? `-${part}` : ""}`;
  return `${service.slice(0, 63 - suffix.length)}${suffix}`;
}

function endpoint(a: V1EndpointAddress, ready: boolean): NonNullable<V1EndpointSlice["endpoints"]>[number] {
  return {
    addresses: [a.ip],
    conditions: { ready, serving: ready, terminating: false },
    ...(a.hostname ? { hostname: a.hostname } : {}),
    ...(a.nodeName ? { nodeName: a.nodeName } : {}),
    ...(a.targetRef ? { targetRef: a.targetRef } : {}),
  };
}

/** The slices `svc` should have, or undefined when it has no selector (its Endpoints are someone else's). */
export function endpointSlicesFor(
  svc: V1Service,
  eps: V1Endpoints | undefined,
): V1EndpointSlice[] | undefined {
  if (Object.keys(svc.spec?.selector ?? {}).length === 0) return undefined;
  const name = svc.metadata!.name!;
  const namespace = svc.metadata!.namespace!;
  const meta = (n: string): V1EndpointSlice["metadata"] => ({
    name: n,
    namespace,
    labels: { ...(svc.metadata?.labels ?? {}), [SERVICE_NAME_LABEL]: name, [MANAGED_BY_LABEL]: MANAGED_BY },
    ownerReferences: [
      {
        apiVersion: "v1",
        kind: "Service",
        name,
        uid: svc.metadata!.uid!,
        controller: true,
        blockOwnerDeletion: true,
      },
    ],
  });
  const out: V1EndpointSlice[] = [];
  for (const subset of eps?.subsets ?? []) {
    const ports: DiscoveryV1EndpointPort[] = (subset.ports ?? []).map((p) => ({
      ...(p.name ? { name: p.name } : {}),
      port: p.port,
      protocol: p.protocol ?? "TCP",
      ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}),
    }));
    const all = [
      ...(subset.addresses ?? []).map((a) => endpoint(a, true)),
      ...(subset.notReadyAddresses ?? []).map((a) => endpoint(a, false)),
    ];
    for (let part = 0; part * MAX_ENDPOINTS_PER_SLICE < Math.max(all.length, 1); part++) {
      out.push({
        apiVersion: "discovery.k8s.io/v1",
        kind: "EndpointSlice",
        metadata: meta(sliceName(name, ports, part)),
        addressType: "IPv4",
        endpoints: all.slice(part * MAX_ENDPOINTS_PER_SLICE, (part + 1) * MAX_ENDPOINTS_PER_SLICE),
        ports,
      });
    }
  }
  if (out.length === 0) {
    out.push({
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: meta(sliceName(name, [], 0)),
      addressType: "IPv4",
      endpoints: [],
      ports: [],
    });
  }
  return out;
}

/** Whether `have` already says what `want` says (labels, endpoints, ports). */
export function sliceEqual(have: V1EndpointSlice, want: V1EndpointSlice): boolean {
  return (
    stableJson(have.endpoints ?? []) === stableJson(want.endpoints ?? []) &&
    stableJson(have.ports ?? []) === stableJson(want.ports ?? []) &&
    stableJson(have.metadata?.labels ?? {}) === stableJson(want.metadata?.labels ?? {}) &&
    have.addressType === want.addressType
  );
}
