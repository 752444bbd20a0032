import type { V1Status, V1StatusCause } from "@kubernetes/client-node";

/** A Kubernetes Status failure: what the API answers instead of an object (never a stack trace). */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: { name?: string; group?: string; kind?: string; causes?: V1StatusCause[] },
  ) {
    super(message);
  }

  toStatus(): V1Status {
    const status: V1Status = {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: this.message,
      reason: this.reason,
      code: this.code,
    };
    if (this.details) status.details = this.details;
    return status;
  }
}

export function notFound(kind: string, name: string, group = ""): ApiError {
  const what = group ? `${kind}.${group}` : kind;
  return new ApiError(404, "NotFound", `${what} "${name}" not found`, { name, group, kind });
}

export function alreadyExists(kind: string, name: string, group = ""): ApiError {
  const what = group ? `${kind}.${group}` : kind;
  return new ApiError(409, "AlreadyExists", `${what} "${name}" already exists`, { name, group, kind });
}

export function conflict(kind: string, name: string, group = ""): ApiError {
  const what = group ? `${kind}.${group}` : kind;
  return new ApiError(
    409,
    "Conflict",
    `Operation cannot be fulfilled on ${what} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    { name, group, kind },
  );
}

export function badRequest(message: string): ApiError {
  return new ApiError(400, "BadRequest", message);
}

export function invalid(kind: string, name: string, causes: V1StatusCause[], group = ""): ApiError {
  const what = group ? `${kind}.${group}` : kind;
  // As apimachinery's aggregate error: one cause bare, several in brackets.
  const all = causes.map((c) => `${c.field}: ${c.message}`);
  const list = all.length === 1 ? all[0]! : `[${all.join(", ")}]`;
  return new ApiError(422, "Invalid", `${what} "${name}" is invalid: ${list}`, { name, group, kind, causes });
}

export function gone(message: string): ApiError {
  return new ApiError(410, "Expired", message);
}
