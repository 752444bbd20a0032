/** Label and field selectors as kubectl and client-go send them in `labelSelector` / `fieldSelector`. */

export type LabelRequirement =
  | { key: string; op: "=" | "!="; value: string }
  | { key: string; op: "in" | "notin"; values: string[] }
  | { key: string; op: "exists" | "!exists" };

/** Splits on commas that are not inside a parenthesised value set. */
function splitTopLevel(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of s) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      parts.push(cur);
      cur = "";
    } else cur += ch;
  }
  parts.push(cur);
  return parts.map((p) => p.trim()).filter((p) => p.length > 0);
}

const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME_MSG =
  "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/** Why a label key is not one (apimachinery's IsQualifiedName), or undefined when it is. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.lastIndexOf("/");
  const name = slash < 0 ? key : key.slice(slash + 1);
  const prefix = slash < 0 ? undefined : key.slice(0, slash);
  if (prefix !== undefined) {
    if (prefix.length === 0) return "prefix part must be non-empty";
    if (prefix.length > 253) return "prefix part must be no more than 253 characters";
    if (!DNS_SUBDOMAIN.test(prefix))
      return "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
  }
  if (name.length === 0) return "name part must be non-empty";
  if (name.length > 63) return "name part must be no more than 63 characters";
  if (!QUALIFIED_NAME.test(name)) return QUALIFIED_NAME_MSG;
  return undefined;
}

function labelValueProblem(value: string): string | undefined {
  if (value.length > 63) return "must be no more than 63 characters";
  if (value !== "" && !QUALIFIED_NAME.test(value))
    return "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
  return undefined;
}

function checked(req: LabelRequirement): LabelRequirement {
  const keyProblem = labelKeyProblem(req.key);
  if (keyProblem)
    throw new Error(`unable to parse requirement: invalid label key "${req.key}": ${keyProblem}`);
  const values =
    req.op === "=" || req.op === "!=" ? [req.value] : req.op === "in" || req.op === "notin" ? req.values : [];
  for (const v of values) {
    const p = labelValueProblem(v);
    if (p)
      throw new Error(`unable to parse requirement: invalid label value: "${v}": at key: "${req.key}": ${p}`);
  }
  return req;
}

/** Parses a label selector; throws Error with a readable message when malformed. */
export function parseLabelSelector(selector: string): LabelRequirement[] {
  const reqs: LabelRequirement[] = [];
  for (const part of splitTopLevel(selector)) {
    let m = /^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(part);
    if (m) {
      const values = m[3]!
        .split(",")
        .map((v) => v.trim())
        .filter((v) => v !== "");
      reqs.push(checked({ key: m[1]!, op: m[2] as "in" | "notin", values }));
      continue;
    }
    m = /^([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)$/.exec(part);
    if (m) {
      reqs.push(checked({ key: m[1]!, op: m[2] === "!=" ? "!=" : "=", value: m[3]! }));
      continue;
    }
    m = /^(!?)\s*([\w./-]+)$/.exec(part);
    if (m) {
      reqs.push(checked({ key: m[2]!, op: m[1] ? "!exists" : "exists" }));
      continue;
    }
    throw new Error(`unable to parse requirement "${part}" in label selector "${selector}"`);
  }
  return reqs;
}

export function matchesLabels(reqs: LabelRequirement[], labels: Record<string, string> | undefined): boolean {
  // A stored object's labels are not trusted to be a map of strings: anything else matches as no labels.
  const l: Record<string, unknown> = typeof labels === "object" && labels !== null ? labels : {};
  return reqs.every((req) => {
    const has = Object.prototype.hasOwnProperty.call(l, req.key);
    const v = l[req.key];
    switch (req.op) {
      case "=":
        return has && v === req.value;
      case "!=":
        return !has || v !== req.value;
      case "in":
        return has && typeof v === "string" && req.values.includes(v);
      case "notin":
        return !has || typeof v !== "string" || !req.values.includes(v);
      case "exists":
        return has;
      case "!exists":
        return !has;
    }
  });
}

/** A LabelSelector object (matchLabels/matchExpressions) as found in Deployment and ReplicaSet specs. */
export interface SelectorObject {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

/** Skips what is not a well-typed requirement (a stored object is not trusted to be). */
export function selectorObjectToRequirements(sel: SelectorObject | undefined): LabelRequirement[] {
  const reqs: LabelRequirement[] = [];
  const labels: unknown = typeof sel === "object" && sel !== null ? sel.matchLabels : undefined;
  if (typeof labels === "object" && labels !== null) {
    for (const [key, value] of Object.entries(labels)) {
      if (typeof value === "string") reqs.push({ key, op: "=", value });
    }
  }
  const exprs: unknown = typeof sel === "object" && sel !== null ? sel.matchExpressions : undefined;
  for (const e of Array.isArray(exprs) ? (exprs as unknown[]) : []) {
    if (typeof e !== "object" || e === null) continue;
    const { key, operator, values } = e as { key?: unknown; operator?: unknown; values?: unknown };
    if (typeof key !== "string" || typeof operator !== "string") continue;
    const op = operator.toLowerCase();
    const vals = Array.isArray(values) ? values.filter((v): v is string => typeof v === "string") : [];
    if (op === "in" || op === "notin") reqs.push({ key, op, values: vals });
    else if (op === "exists") reqs.push({ key, op: "exists" });
    else if (op === "doesnotexist") reqs.push({ key, op: "!exists" });
  }
  return reqs;
}

/** Renders a LabelSelector object in the string form (`app=web,tier in (a,b)`). */
export function selectorObjectToString(sel: SelectorObject | undefined): string {
  return selectorObjectToRequirements(sel)
    .map((r) => {
      if (r.op === "=" || r.op === "!=") return `${r.key}${r.op}${r.value}`;
      if (r.op === "in" || r.op === "notin") return `${r.key} ${r.op} (${r.values.join(",")})`;
      return r.op === "exists" ? r.key : `!${r.key}`;
    })
    .join(",");
}

export interface FieldRequirement {
  field: string;
  op: "=" | "!=";
  value: string;
}

export const SUPPORTED_FIELDS = [
  "metadata.name",
  "metadata.namespace",
  "spec.nodeName",
  "status.phase",
  "spec.schedulerName",
  "involvedObject.name",
  "involvedObject.kind",
  // kubectl describe finds an object's events by all four.
  "involvedObject.namespace",
  "involvedObject.uid",
  "involvedObject.apiVersion",
  "reason",
  "type",
];

export function parseFieldSelector(selector: string): FieldRequirement[] {
  return selector
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p !== "")
    .map((part) => {
      const m = /^([\w.]+)\s*(==|=|!=)\s*(.*)$/.exec(part);
      if (!m) throw new Error(`invalid field selector "${part}"`);
      if (!SUPPORTED_FIELDS.includes(m[1]!)) {
        throw new Error(`field label not supported: ${m[1]} (supported: ${SUPPORTED_FIELDS.join(", ")})`);
      }
      return { field: m[1]!, op: m[2] === "!=" ? ("!=" as const) : ("=" as const), value: m[3]! };
    });
}

/** The field as a selector sees it; a value that is not a scalar (a stored object is not trusted) is "". */
function fieldValue(obj: unknown, path: string): string {
  let cur: unknown = obj;
  for (const seg of path.split(".")) {
    if (cur === null || typeof cur !== "object" || !Object.prototype.hasOwnProperty.call(cur, seg)) return "";
    cur = (cur as Record<string, unknown>)[seg];
  }
  return typeof cur === "string" || typeof cur === "number" || typeof cur === "boolean" ? String(cur) : "";
}

export function matchesFields(reqs: FieldRequirement[], obj: unknown): boolean {
  return reqs.every((r) => (fieldValue(obj, r.field) === r.value) === (r.op === "="));
}
