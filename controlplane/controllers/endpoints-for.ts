/** The Endpoints controller's decision, pure: a Service's Endpoints from the pods it selects. */
import type {
  V1EndpointAddress,
  CoreV1EndpointPort as V1EndpointPort,
  V1EndpointSubset,
  V1Endpoints,
  V1Pod,
  V1Service,
  V1ServicePort,
} from "@kubernetes/client-node";
import { isPodReady } from "./pods.ts";

/** targetPort of a service port on one pod: a number as is, a name via the pod's container ports. */
export function resolveTargetPort(port: V1ServicePort, pod: V1Pod): number | undefined {
  const t = port.targetPort ?? port.port;
  if (typeof t === "number") return t;
  if (/^\d+$/.test(String(t))) return Number(t);
  for (const c of pod.spec?.containers ?? [])
    for (const p of c.ports ?? [])
      if (p.name === t && (p.protocol ?? "TCP") === (port.protocol ?? "TCP")) return p.containerPort;
  return undefined;
}

function selects(svc: V1Service, pod: V1Pod): boolean {
  const sel = svc.spec?.selector ?? {};
  return Object.entries(sel).every(([k, v]) => pod.metadata?.labels?.[k] === v);
}

/**
 * Endpoints for a Service with a selector (undefined for a Service without one: its Endpoints are
 * the user's). Pods without an IP, terminal or being deleted are left out; not-ready pods go to
 * notReadyAddresses (unless publishNotReadyAddresses). Pods are grouped into subsets by their
 * resolved port set, as the Kubernetes controller does, and everything is sorted so the result is
 * stable and an unchanged Service is not rewritten.
 */
export function endpointsFor(svc: V1Service, pods: V1Pod[]): V1Endpoints | undefined {
  const sel = svc.spec?.selector;
  if (!sel || Object.keys(sel).length === 0) return undefined;
  const groups = new Map<
    string,
    { ports: V1EndpointPort[]; ready: V1EndpointAddress[]; notReady: V1EndpointAddress[] }
  >();
  for (const pod of pods) {
    if (pod.metadata?.namespace !== svc.metadata?.namespace || !selects(svc, pod)) continue;
    if (!pod.status?.podIP || pod.metadata?.deletionTimestamp) continue;
    if (pod.status.phase === "Succeeded" || pod.status.phase === "Failed") continue;
    const ports: V1EndpointPort[] = [];
    for (const sp of svc.spec?.ports ?? []) {
      const port = resolveTargetPort(sp, pod);
      if (port === undefined) continue;
      ports.push({
        ...(sp.name ? { name: sp.name } : {}),
        port,
        protocol: sp.protocol ?? "TCP",
        ...(sp.appProtocol ? { appProtocol: sp.appProtocol } : {}),
      });
    }
    if ((svc.spec?.ports ?? []).length > 0 && ports.length === 0) continue;
    ports.sort((a, b) => (a.name ?? "").localeCompare(b.name ?? "") || a.port - b.port);
    const key = JSON.stringify(ports);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { ports, ready: [], notReady: [] }));
    const addr: V1EndpointAddress = {
      ip: pod.status.podIP,
      // A pod named in the Service's subdomain (a StatefulSet's) is known by its hostname there.
      ...(pod.spec?.hostname && pod.spec.subdomain === svc.metadata?.name
        ? { hostname: pod.spec.hostname }
        : {}),
      ...(pod.spec?.nodeName ? { nodeName: pod.spec.nodeName } : {}),
      targetRef: {
        kind: "Pod",
        namespace: pod.metadata?.namespace,
        name: pod.metadata?.name,
        uid: pod.metadata?.uid,
      },
    };
    if (isPodReady(pod) || svc.spec?.publishNotReadyAddresses) g.ready.push(addr);
    else g.notReady.push(addr);
  }
  const byIp = (a: V1EndpointAddress, b: V1EndpointAddress): number =>
    a.ip.localeCompare(b.ip, "en", { numeric: true });
  const subsets: V1EndpointSubset[] = [...groups.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([, g]) => ({
      ...(g.ready.length ? { addresses: g.ready.sort(byIp) } : {}),
      ...(g.notReady.length ? { notReadyAddresses: g.notReady.sort(byIp) } : {}),
      ...(g.ports.length ? { ports: g.ports } : {}),
    }));
  return {
    apiVersion: "v1",
    kind: "Endpoints",
    metadata: {
      name: svc.metadata?.name,
      namespace: svc.metadata?.namespace,
      ...(svc.metadata?.labels ? { labels: svc.metadata.labels } : {}),
    },
    subsets,
  };
}

/** True when the stored Endpoints already say what `want` says (so no write is needed). */
export function endpointsEqual(have: V1Endpoints | undefined, want: V1Endpoints): boolean {
  if (!have) return false;
  const norm = (e: V1Endpoints) => JSON.stringify({ l: e.metadata?.labels ?? {}, s: e.subsets ?? [] });
  return norm(have) === norm(want);
}
