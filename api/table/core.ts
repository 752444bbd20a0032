/** Printers of core/v1's other kinds, discovery.k8s.io's EndpointSlice and coordination.k8s.io's Lease. */
import type { Cell, Obj, Printer } from "./cells.ts";
import { AGE, NAME, age, arr, col, firstThree, humanDuration, num, o, str } from "./cells.ts";

function podCells(pod: Obj, now: number): Cell[] {
  const spec = o(pod.spec);
  const status = o(pod.status);
  const statuses = arr(status.containerStatuses).map(o);
  const total = arr(spec.containers).length;
  const ready = statuses.filter((c) => c.ready === true).length;
  const inits = arr(status.initContainerStatuses).map(o);
  let restarts = statuses.reduce((n, c) => n + num(c.restartCount), 0);
  let reason = str(status.reason, "") || str(status.phase, "Unknown");
  // init containers first, as kubectl's printer does: Init:N/M, Init:<reason>, Init:ExitCode:N
  let initializing = false;
  for (const [i, c] of inits.entries()) {
    restarts += num(c.restartCount);
    const waiting = o(o(c.state).waiting);
    const terminated = o(o(c.state).terminated);
    if (c.state && o(c.state).terminated && num(terminated.exitCode) === 0) continue;
    initializing = true;
    if (o(c.state).terminated)
      reason = terminated.reason
        ? `Init:${str(terminated.reason, "")}`
        : `Init:ExitCode:${num(terminated.exitCode)}`;
    else if (waiting.reason && waiting.reason !== "PodInitializing")
      reason = `Init:${str(waiting.reason, "")}`;
    else reason = `Init:${i}/${arr(spec.initContainers).length}`;
    break;
  }
  for (const c of initializing ? [] : statuses) {
    const state = o(c.state);
    const waiting = o(state.waiting);
    const terminated = o(state.terminated);
    if (waiting.reason) reason = str(waiting.reason, "");
    else if (terminated.reason) reason = str(terminated.reason, "");
  }
  if (o(pod.metadata).deletionTimestamp) reason = "Terminating";
  return [
    str(o(pod.metadata).name),
    `${ready}/${total}`,
    reason,
    restarts,
    age(pod, now),
    str(status.podIP),
    str(spec.nodeName),
    "<none>",
    "<none>",
  ];
}

function servicePorts(svc: Obj): string {
  const ports = arr(o(svc.spec).ports).map(o);
  if (ports.length === 0) return "<none>";
  return ports
    .map((p) => `${str(p.port, "")}${p.nodePort ? `:${str(p.nodePort, "")}` : ""}/${str(p.protocol, "TCP")}`)
    .join(",");
}

function nodeStatus(node: Obj): string {
  const ready = arr(o(node.status).conditions)
    .map(o)
    .find((c) => c.type === "Ready");
  let s = ready?.status === "True" ? "Ready" : ready ? "NotReady" : "Unknown";
  if (o(node.spec).unschedulable) s += ",SchedulingDisabled";
  return s;
}

function nodeRoles(node: Obj): string {
  const roles = Object.keys(o(o(node.metadata).labels))
    .filter((k) => k.startsWith("node-role.kubernetes.io/"))
    .map((k) => k.slice("node-role.kubernetes.io/".length));
  return roles.length ? roles.sort().join(",") : "<none>";
}

function endpointsList(ep: Obj): string {
  const out: string[] = [];
  for (const subset of arr(ep.subsets).map(o)) {
    for (const a of arr(subset.addresses).map(o)) {
      const ports = arr(subset.ports).map(o);
      if (ports.length === 0) out.push(str(a.ip, ""));
      for (const p of ports) out.push(`${str(a.ip, "")}:${str(p.port, "")}`);
    }
  }
  if (out.length === 0) return "<none>";
  return out.length > 3 ? `${out.slice(0, 3).join(",")} + ${out.length - 3} more...` : out.join(",");
}

export const CORE_PRINTERS: Record<string, Printer> = {
  Pod: {
    columns: [
      NAME,
      col("Ready"),
      col("Status"),
      col("Restarts", "integer"),
      AGE,
      col("IP", "string", 1),
      col("Node", "string", 1),
      col("Nominated Node", "string", 1),
      col("Readiness Gates", "string", 1),
    ],
    cells: podCells,
  },
  Node: {
    columns: [
      NAME,
      col("Status"),
      col("Roles"),
      AGE,
      col("Version"),
      col("Internal-IP", "string", 1),
      col("External-IP", "string", 1),
      col("OS-Image", "string", 1),
      col("Kernel-Version", "string", 1),
      col("Container-Runtime", "string", 1),
    ],
    cells: (n, now) => {
      const st = o(n.status);
      const info = o(st.nodeInfo);
      const addr = (t: string): string =>
        str(
          arr(st.addresses)
            .map(o)
            .find((a) => a.type === t)?.address,
        );
      return [
        str(o(n.metadata).name),
        nodeStatus(n),
        nodeRoles(n),
        age(n, now),
        str(info.kubeletVersion, ""),
        addr("InternalIP"),
        addr("ExternalIP"),
        str(info.osImage, "<unknown>"),
        str(info.kernelVersion, "<unknown>"),
        str(info.containerRuntimeVersion, "<unknown>"),
      ];
    },
  },
  Service: {
    columns: [
      NAME,
      col("Type"),
      col("Cluster-IP"),
      col("External-IP"),
      col("Port(s)"),
      AGE,
      col("Selector", "string", 1),
    ],
    cells: (s, now) => {
      const spec = o(s.spec);
      const ext = arr(spec.externalIPs).join(",") || (spec.type === "LoadBalancer" ? "<pending>" : "<none>");
      const sel =
        Object.entries(o(spec.selector))
          .map(([k, v]) => `${k}=${str(v, "")}`)
          .join(",") || "<none>";
      return [
        str(o(s.metadata).name),
        str(spec.type, "ClusterIP"),
        str(spec.clusterIP),
        ext,
        servicePorts(s),
        age(s, now),
        sel,
      ];
    },
  },
  Namespace: {
    columns: [NAME, col("Status"), AGE],
    cells: (n, now) => [str(o(n.metadata).name), str(o(n.status).phase, "Active"), age(n, now)],
  },
  Endpoints: {
    columns: [NAME, col("Endpoints"), AGE],
    cells: (e, now) => [str(o(e.metadata).name), endpointsList(e), age(e, now)],
  },
  EndpointSlice: {
    columns: [NAME, col("AddressType"), col("Ports"), col("Endpoints"), AGE],
    cells: (e, now) => [
      str(o(e.metadata).name),
      str(e.addressType, ""),
      firstThree(arr(e.ports).map((p) => str(o(p).port, "<unset>"))),
      firstThree(arr(e.endpoints).flatMap((x) => arr(o(x).addresses).map((a) => str(a, "")))),
      age(e, now),
    ],
  },
  ConfigMap: {
    columns: [NAME, col("Data", "integer"), AGE],
    cells: (c, now) => [
      str(o(c.metadata).name),
      Object.keys(o(c.data)).length + Object.keys(o(c.binaryData)).length,
      age(c, now),
    ],
  },
  Secret: {
    columns: [NAME, col("Type"), col("Data", "integer"), AGE],
    cells: (s, now) => [
      str(o(s.metadata).name),
      str(s.type, "Opaque"),
      Object.keys(o(s.data)).length,
      age(s, now),
    ],
  },
  ServiceAccount: {
    columns: [NAME, col("Secrets", "integer"), AGE],
    cells: (s, now) => [str(o(s.metadata).name), arr(s.secrets).length, age(s, now)],
  },
  Event: {
    columns: [col("Last Seen"), col("Type"), col("Reason"), col("Object"), col("Message"), NAME],
    cells: (e, now) => {
      const last = e.lastTimestamp ?? e.eventTime ?? o(e.metadata).creationTimestamp;
      const inv = o(e.involvedObject);
      return [
        typeof last === "string" ? humanDuration(now - Date.parse(last)) : "<unknown>",
        str(e.type, "Normal"),
        str(e.reason, ""),
        `${str(inv.kind, "").toLowerCase()}/${str(inv.name, "")}`,
        str(e.message, ""),
        str(o(e.metadata).name),
      ];
    },
  },
  Lease: {
    columns: [NAME, col("Holder"), AGE],
    cells: (l, now) => [str(o(l.metadata).name), str(o(l.spec).holderIdentity, ""), age(l, now)],
  },
};
