import type { V1StatusCause } from "@kubernetes/client-node";
import { stableStringify } from "../../lib/stable-json.ts";

/**
 * Field errors as apimachinery's `field.Error` renders them: the cause's reason is the error
 * type, its message the error body (`Invalid value: "x": detail`), its field the path
 * (`spec.containers[0].name`, `data[key]`).
 */

export class FieldPath {
  // Built on every field the checks walk, read only when a cause names it: the text waits.
  private text: string | undefined;

  private constructor(
    private readonly parent: FieldPath | undefined,
    private readonly segment: string,
  ) {
    if (!parent) this.text = segment;
  }

  static root(name = ""): FieldPath {
    return new FieldPath(undefined, name);
  }

  child(name: string): FieldPath {
    return new FieldPath(this, `.${name}`);
  }

  index(i: number): FieldPath {
    return new FieldPath(this, `[${i}]`);
  }

  key(k: string): FieldPath {
    return new FieldPath(this, `[${k}]`);
  }

  toString(): string {
    if (this.text === undefined) {
      const before = this.parent!.toString();
      this.text = before ? before + this.segment : this.segment.replace(/^\./, "");
    }
    return this.text;
  }
}

export type FieldErrors = V1StatusCause[];

export const REDACTED = "<secret contents redacted>";
const MAX_SHOWN = 256;

/** A bad value as upstream prints it: strings quoted, numbers and booleans bare, the rest as JSON. */
export function showValue(v: unknown): string {
  if (v === null || v === undefined) return "null";
  let s: string;
  if (typeof v === "number" || typeof v === "boolean") s = String(v);
  else s = JSON.stringify(v) ?? String(v);
  // A megabyte of bad value is no use in a message; its start says which value it is.
  return s.length > MAX_SHOWN ? `${s.slice(0, MAX_SHOWN)}...` : s;
}

function at(path: FieldPath | string): string {
  return typeof path === "string" ? path : path.toString();
}

function withDetail(body: string, detail: string | undefined): string {
  return detail ? `${body}: ${detail}` : body;
}

export function invalidValue(path: FieldPath | string, value: unknown, detail: string): V1StatusCause {
  return {
    field: at(path),
    reason: "FieldValueInvalid",
    message: `Invalid value: ${showValue(value)}: ${detail}`,
  };
}

export function typeInvalid(path: FieldPath, value: unknown, detail: string, secret = false): V1StatusCause {
  return {
    field: at(path),
    reason: "FieldValueTypeInvalid",
    message: `Invalid value: ${secret ? showValue(REDACTED) : showValue(value)}: ${detail}`,
  };
}

export function required(path: FieldPath | string, detail?: string): V1StatusCause {
  return { field: at(path), reason: "FieldValueRequired", message: withDetail("Required value", detail) };
}

export function forbidden(path: FieldPath | string, detail: string): V1StatusCause {
  return { field: at(path), reason: "FieldValueForbidden", message: withDetail("Forbidden", detail) };
}

export function tooLong(path: FieldPath | string, max: number): V1StatusCause {
  return {
    field: at(path) || "[]",
    reason: "FieldValueTooLong",
    message: `Too long: must have at most ${max} bytes`,
  };
}

export function notSupported(path: FieldPath | string, value: unknown, supported: string[]): V1StatusCause {
  return {
    field: at(path),
    reason: "FieldValueNotSupported",
    message: `Unsupported value: ${showValue(value)}: supported values: ${supported.map((s) => `"${s}"`).join(", ")}`,
  };
}

export function duplicate(path: FieldPath | string, value: unknown): V1StatusCause {
  return { field: at(path), reason: "FieldValueDuplicate", message: `Duplicate value: ${showValue(value)}` };
}

/** apimachinery's ValidateImmutableField. */
export function immutable(path: FieldPath | string, next: unknown, old: unknown): V1StatusCause[] {
  return stableStringify(next) === stableStringify(old)
    ? []
    : [invalidValue(path, next, "field is immutable")];
}
