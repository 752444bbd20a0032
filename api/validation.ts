import type { V1StatusCause } from "@kubernetes/client-node";

/** Field-level validation of the served kinds; each problem becomes one cause of a 422 Invalid Status. */

type Obj = Record<string, unknown>;

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_KEY_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

function obj(v: unknown): Obj | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
}

function cause(field: string, message: string, reason = "FieldValueInvalid"): V1StatusCause {
  return { field, message, reason };
}

export function dns1123LabelProblem(name: string): string | undefined {
  if (name.length > 63) return "must be no more than 63 characters";
  if (!DNS1123_LABEL.test(name)) {
    return `a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')`;
  }
  return undefined;
}

export function dns1123SubdomainProblem(name: string): string | undefined {
  if (name.length > 253) return "must be no more than 253 characters";
  if (!DNS1123_SUBDOMAIN.test(name)) {
    return `a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')`;
  }
  return undefined;
}

/** Kinds whose names must be DNS-1123 labels (they become DNS names or hostnames). */
const LABEL_NAMED = new Set(["Namespace", "Service"]);

function validateLabels(labels: unknown, field: string, causes: V1StatusCause[]): void {
  if (labels === undefined) return;
  const l = obj(labels);
  if (!l) {
    causes.push(cause(field, "must be a map of strings", "FieldValueTypeInvalid"));
    return;
  }
  for (const [k, v] of Object.entries(l)) {
    const name = k.includes("/") ? k.slice(k.indexOf("/") + 1) : k;
    const prefix = k.includes("/") ? k.slice(0, k.indexOf("/")) : undefined;
    if (
      !LABEL_KEY_NAME.test(name) ||
      name.length > 63 ||
      (prefix !== undefined && dns1123SubdomainProblem(prefix))
    ) {
      causes.push(
        cause(
          `${field}`,
          `Invalid value: "${k}": name part must consist of alphanumeric characters, '-', '_' or '.'`,
        ),
      );
    }
    if (typeof v !== "string" || v.length > 63 || !LABEL_VALUE.test(v)) {
      causes.push(
        cause(
          `${field}`,
          `Invalid value: ${JSON.stringify(v)}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`,
        ),
      );
    }
  }
}

function validateContainers(list: unknown, field: string, causes: V1StatusCause[], required: boolean): void {
  if (list === undefined) {
    if (required) causes.push(cause(field, "Required value", "FieldValueRequired"));
    return;
  }
  if (!Array.isArray(list)) {
    causes.push(cause(field, "must be a list", "FieldValueTypeInvalid"));
    return;
  }
  if (required && list.length === 0) causes.push(cause(field, "Required value", "FieldValueRequired"));
  const seen = new Set<string>();
  list.forEach((raw, i) => {
    const c = obj(raw);
    const f = `${field}[${i}]`;
    if (!c) {
      causes.push(cause(f, "must be an object", "FieldValueTypeInvalid"));
      return;
    }
    if (typeof c.name !== "string" || c.name === "")
      causes.push(cause(`${f}.name`, "Required value", "FieldValueRequired"));
    else {
      const p = dns1123LabelProblem(c.name);
      if (p) causes.push(cause(`${f}.name`, `Invalid value: "${c.name}": ${p}`));
      if (seen.has(c.name))
        causes.push(cause(`${f}.name`, `Duplicate value: "${c.name}"`, "FieldValueDuplicate"));
      seen.add(c.name);
    }
    if (typeof c.image !== "string" || c.image.trim() === "") {
      causes.push(cause(`${f}.image`, "Required value", "FieldValueRequired"));
    }
    const ports = c.ports;
    if (Array.isArray(ports)) {
      ports.forEach((rp, j) => {
        const port = obj(rp);
        const n = port?.containerPort;
        if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 65535) {
          causes.push(
            cause(
              `${f}.ports[${j}].containerPort`,
              `Invalid value: ${JSON.stringify(n)}: must be between 1 and 65535, inclusive`,
            ),
          );
        }
      });
    }
  });
}

function validatePodSpec(spec: unknown, field: string, causes: V1StatusCause[]): void {
  const s = obj(spec);
  if (!s) {
    causes.push(cause(field, "Required value", "FieldValueRequired"));
    return;
  }
  validateContainers(s.containers, `${field}.containers`, causes, true);
  validateContainers(s.initContainers, `${field}.initContainers`, causes, false);
  const rp = s.restartPolicy;
  if (rp !== undefined && !["Always", "OnFailure", "Never"].includes(String(rp))) {
    causes.push(
      cause(
        `${field}.restartPolicy`,
        `Unsupported value: "${String(rp)}": supported values: "Always", "OnFailure", "Never"`,
        "FieldValueNotSupported",
      ),
    );
  }
}

function validateSelectorMatchesTemplate(spec: Obj, field: string, causes: V1StatusCause[]): void {
  const sel = obj(spec.selector);
  if (!sel || (!obj(sel.matchLabels) && !Array.isArray(sel.matchExpressions))) {
    causes.push(cause(`${field}.selector`, "Required value", "FieldValueRequired"));
    return;
  }
  const labels = obj(obj(obj(spec.template)?.metadata)?.labels) ?? {};
  for (const [k, v] of Object.entries(obj(sel.matchLabels) ?? {})) {
    if (labels[k] !== v) {
      causes.push(
        cause(
          `${field}.template.metadata.labels`,
          `Invalid value: ${JSON.stringify(labels)}: \`selector\` does not match template \`labels\``,
        ),
      );
      break;
    }
  }
  const replicas = spec.replicas;
  if (
    replicas !== undefined &&
    (typeof replicas !== "number" || !Number.isInteger(replicas) || replicas < 0)
  ) {
    causes.push(
      cause(
        `${field}.replicas`,
        `Invalid value: ${JSON.stringify(replicas)}: must be greater than or equal to 0`,
      ),
    );
  }
  validatePodSpec(obj(spec.template)?.spec, `${field}.template.spec`, causes);
}

/** All problems with an object about to be stored (after defaulting). */
export function validateObject(kind: string, o: Obj, namespaced: boolean): V1StatusCause[] {
  const causes: V1StatusCause[] = [];
  const meta = obj(o.metadata);
  const name = typeof meta?.name === "string" ? meta.name : "";
  if (!name)
    causes.push(
      cause("metadata.name", "Required value: name or generateName is required", "FieldValueRequired"),
    );
  else {
    const p = LABEL_NAMED.has(kind) ? dns1123LabelProblem(name) : dns1123SubdomainProblem(name);
    if (p) causes.push(cause("metadata.name", `Invalid value: "${name}": ${p}`));
  }
  if (namespaced && meta?.namespace !== undefined && typeof meta.namespace === "string") {
    const p = dns1123LabelProblem(meta.namespace);
    if (p) causes.push(cause("metadata.namespace", `Invalid value: "${meta.namespace}": ${p}`));
  }
  validateLabels(meta?.labels, "metadata.labels", causes);
  if (meta?.annotations !== undefined && !obj(meta.annotations)) {
    causes.push(cause("metadata.annotations", "must be a map of strings", "FieldValueTypeInvalid"));
  }
  const spec = obj(o.spec);
  switch (kind) {
    case "Pod":
      validatePodSpec(o.spec, "spec", causes);
      break;
    case "Deployment":
    case "ReplicaSet":
      if (!spec) causes.push(cause("spec", "Required value", "FieldValueRequired"));
      else validateSelectorMatchesTemplate(spec, "spec", causes);
      break;
    case "Service": {
      const type = spec?.type;
      if (
        type !== undefined &&
        !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].includes(String(type))
      ) {
        causes.push(cause("spec.type", `Unsupported value: "${String(type)}"`, "FieldValueNotSupported"));
      }
      const ports = spec?.ports;
      if (
        type !== "ExternalName" &&
        spec?.clusterIP !== "None" &&
        (!Array.isArray(ports) || ports.length === 0)
      ) {
        causes.push(cause("spec.ports", "Required value", "FieldValueRequired"));
      }
      (Array.isArray(ports) ? ports : []).forEach((rp, i) => {
        const port = obj(rp);
        const n = port?.port;
        if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 65535) {
          causes.push(
            cause(
              `spec.ports[${i}].port`,
              `Invalid value: ${JSON.stringify(n)}: must be between 1 and 65535, inclusive`,
            ),
          );
        }
        if (Array.isArray(ports) && ports.length > 1 && !port?.name) {
          causes.push(cause(`spec.ports[${i}].name`, "Required value", "FieldValueRequired"));
        }
      });
      break;
    }
    case "ConfigMap":
    case "Secret":
      for (const field of ["data", "stringData", "binaryData"]) {
        const d = o[field];
        if (d === undefined) continue;
        const m = obj(d);
        if (!m) causes.push(cause(field, "must be a map of strings", "FieldValueTypeInvalid"));
        else
          for (const [k, v] of Object.entries(m)) {
            if (typeof v !== "string")
              causes.push(cause(`${field}[${k}]`, "must be a string", "FieldValueTypeInvalid"));
            if (!/^[-._a-zA-Z0-9]+$/.test(k))
              causes.push(
                cause(
                  `${field}[${k}]`,
                  `Invalid value: "${k}": a valid config key must consist of alphanumeric characters, '-', '_' or '.'`,
                ),
              );
          }
      }
      break;
  }
  return causes;
}
