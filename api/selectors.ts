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
      reqs.push({ key: m[1]!, op: m[2] as "in" | "notin", values });
      continue;
    }
    m = /^([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)$/.exec(part);
    if (m) {
      reqs.push({ key: m[1]!, op: m[2] === "!=" ? "!=" : "=", value: m[3]! });
      continue;
    }
    m = /^(!?)\s*([\w./-]+)$/.exec(part);
    if (m) {
      reqs.push({ key: m[2]!, op: m[1] ? "!exists" : "exists" });
      continue;
    }
    throw new Error(`unable to parse requirement "${part}" in label selector "${selector}"`);
  }
  return reqs;
}

export function matchesLabels(reqs: LabelRequirement[], labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  return reqs.every((req) => {
    const has = Object.prototype.hasOwnProperty.call(l, req.key);
    const v = l[req.key];
    switch (req.op) {
      case "=":
        return has && v === req.value;
      case "!=":
        return !has || v !== req.value;
      case "in":
        return has && req.values.includes(v!);
      case "notin":
        return !has || !req.values.includes(v!);
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

export function selectorObjectToRequirements(sel: SelectorObject | undefined): LabelRequirement[] {
  const reqs: LabelRequirement[] = [];
  for (const [key, value] of Object.entries(sel?.matchLabels ?? {})) reqs.push({ key, op: "=", value });
  for (const e of sel?.matchExpressions ?? []) {
    const op = e.operator.toLowerCase();
    if (op === "in" || op === "notin") reqs.push({ key: e.key, op, values: e.values ?? [] });
    else if (op === "exists") reqs.push({ key: e.key, op: "exists" });
    else if (op === "doesnotexist") reqs.push({ key: e.key, op: "!exists" });
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

function fieldValue(obj: unknown, path: string): string {
  let cur: unknown = obj;
  for (const seg of path.split(".")) {
    if (cur === null || typeof cur !== "object") return "";
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur === undefined || cur === null ? "" : String(cur);
}

export function matchesFields(reqs: FieldRequirement[], obj: unknown): boolean {
  return reqs.every((r) => (fieldValue(obj, r.field) === r.value) === (r.op === "="));
}
