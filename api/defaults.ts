/** Defaulting as Kubernetes does it for the served kinds (fields users usually leave out). */

// The served objects are handled as plain JSON here: typed views come from @kubernetes/client-node.
export type Obj = Record<string, unknown>;

export function obj(v: unknown): Obj | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
}

/** parent[key] as an object, made empty where it is not one. */
export function ensure(parent: Obj, key: string): Obj {
  const cur = obj(parent[key]);
  if (cur) return cur;
  const fresh: Obj = {};
  parent[key] = fresh;
  return fresh;
}

function defaultContainer(c: Obj): void {
  const image = typeof c.image === "string" ? c.image : "";
  if (c.imagePullPolicy === undefined) {
    const tag = image.includes("@") ? "digest" : (/:([^/:]+)$/.exec(image)?.[1] ?? "latest");
    c.imagePullPolicy = tag === "latest" ? "Always" : "IfNotPresent";
  }
  c.terminationMessagePath ??= "/dev/termination-log";
  c.terminationMessagePolicy ??= "File";
  c.resources ??= {};
  for (const p of Array.isArray(c.ports) ? c.ports : []) {
    const port = obj(p);
    if (port) port.protocol ??= "TCP";
  }
}

export function defaultPodSpec(spec: Obj): void {
  spec.restartPolicy ??= "Always";
  spec.dnsPolicy ??= "ClusterFirst";
  spec.terminationGracePeriodSeconds ??= 30;
  spec.schedulerName ??= "default-scheduler";
  spec.securityContext ??= {};
  spec.enableServiceLinks ??= true;
  for (const list of [spec.containers, spec.initContainers]) {
    for (const c of Array.isArray(list) ? list : []) {
      const container = obj(c);
      if (container) defaultContainer(container);
    }
  }
}

function defaultTemplate(spec: Obj): void {
  const template = ensure(spec, "template");
  defaultPodSpec(ensure(template, "spec"));
}

/** Fills defaults in place; ClusterIP allocation is the server's (it needs storage). */
export function applyDefaults(kind: string, o: Obj): void {
  const spec = obj(o.spec);
  switch (kind) {
    case "Pod":
      if (spec) defaultPodSpec(spec);
      ensure(o, "status").phase ??= "Pending";
      break;
    case "Service":
      if (!spec) break;
      spec.type ??= "ClusterIP";
      spec.sessionAffinity ??= "None";
      for (const p of Array.isArray(spec.ports) ? spec.ports : []) {
        const port = obj(p);
        if (!port) continue;
        port.protocol ??= "TCP";
        port.targetPort ??= port.port;
      }
      break;
    case "Deployment":
      if (!spec) break;
      spec.replicas ??= 1;
      spec.revisionHistoryLimit ??= 10;
      spec.progressDeadlineSeconds ??= 600;
      if (!obj(spec.strategy)) spec.strategy = { type: "RollingUpdate" };
      {
        const strategy = obj(spec.strategy)!;
        strategy.type ??= "RollingUpdate";
        if (strategy.type === "RollingUpdate") {
          const ru = ensure(strategy, "rollingUpdate");
          ru.maxUnavailable ??= "25%";
          ru.maxSurge ??= "25%";
        }
      }
      defaultTemplate(spec);
      break;
    case "ReplicaSet":
      if (!spec) break;
      spec.replicas ??= 1;
      defaultTemplate(spec);
      break;
    case "Namespace":
      ensure(o, "spec").finalizers ??= ["kubernetes"];
      ensure(o, "status").phase ??= "Active";
      break;
    case "Secret":
      o.type ??= "Opaque";
      break;
    case "Event":
      o.type ??= "Normal";
      o.count ??= 1;
      break;
  }
}
