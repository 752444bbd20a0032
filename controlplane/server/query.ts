import { posix } from "node:path";
import { parseFieldSelector, parseLabelSelector } from "../../api/selectors.ts";
import type { ApiError } from "../../api/status.ts";
import { badRequest } from "../../api/status.ts";
import type { Selectors } from "../registry.ts";

const INT64_MAX = 9223372036854775807n;
const INT64_MIN = -9223372036854775808n;

/**
 * An integer query parameter, parsed as strictly as Go's strconv.ParseInt (what kube-apiserver's
 * parameter codec uses): `abc`, `1.5` and `1e300` are a 400, not NaN or Infinity further down.
 */
export function intParam(q: URLSearchParams, name: string): number | undefined {
  const raw = q.get(name);
  if (raw === null) return undefined;
  const fail = (why: string): never => {
    throw badRequest(
      `invalid value for query parameter "${name}": strconv.ParseInt: parsing ${JSON.stringify(raw)}: ${why}`,
    );
  };
  if (!/^[+-]?\d+$/.test(raw)) fail("invalid syntax");
  const big = BigInt(raw);
  if (big > INT64_MAX || big < INT64_MIN) fail("value out of range");
  // Past 2^53 a JS number is not exact; no caller needs such values (a grace period of 285 million years).
  if (big > BigInt(Number.MAX_SAFE_INTEGER) || big < BigInt(Number.MIN_SAFE_INTEGER))
    fail("value out of range");
  return Number(big);
}

/** `resourceVersion` as a uint64 decimal, or undefined when absent or empty. */
export function resourceVersionParam(q: URLSearchParams): string | undefined {
  const raw = q.get("resourceVersion");
  if (raw === null || raw === "") return undefined;
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) {
    throw badRequest(
      `resourceVersion: Invalid value: ${JSON.stringify(raw)}: strconv.ParseUint: parsing ${JSON.stringify(raw)}: invalid syntax`,
    );
  }
  return raw;
}

export function selectors(q: URLSearchParams): Selectors {
  try {
    return {
      labels: parseLabelSelector(q.get("labelSelector") ?? ""),
      fields: parseFieldSelector(q.get("fieldSelector") ?? ""),
    };
  } catch (err) {
    throw badRequest((err as Error).message);
  }
}

function invalidContinue(why: string): ApiError {
  return badRequest(`continue key is not valid: ${why}`);
}

/**
 * Checks a continue token before it reaches the store: well-formed, issued for this very
 * collection (its start key lies under `prefix`, so a token from one resource cannot list another),
 * and not from the future. The token itself is the registry's ({rv, start}, base64url JSON).
 */
export function checkContinueToken(token: string, prefix: string, currentRevision: number): void {
  let parsed: unknown;
  try {
    if (!/^[A-Za-z0-9_-]+={0,2}$/.test(token)) throw new Error("not base64url");
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw invalidContinue("the token is not base64url-encoded JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
    throw invalidContinue("the token is not an object");
  const { rv, start } = parsed as { rv?: unknown; start?: unknown };
  if (typeof rv !== "number" || !Number.isSafeInteger(rv) || rv <= 0)
    throw invalidContinue("incorrect encoded start resourceVersion");
  if (typeof start !== "string" || start === "") throw invalidContinue("encoded start key empty");
  // Also no way out of the prefix through "..": the key must be a clean path below it.
  if (!start.startsWith(prefix) || start.length === prefix.length || posix.normalize(start) !== start)
    throw invalidContinue("the token was issued for a different resource or namespace");
  if (rv > currentRevision)
    throw invalidContinue(
      `the token's resourceVersion ${rv} is newer than the current one (${currentRevision})`,
    );
}
