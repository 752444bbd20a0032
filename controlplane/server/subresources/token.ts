/**
 * serviceaccounts/token (authentication.k8s.io/v1 TokenRequest), as kube-apiserver's TokenREST:
 * a JWT for the service account, for the audiences asked (default: the API's), living
 * spec.expirationSeconds (default one hour, at least ten minutes), optionally bound to a Pod,
 * Secret or Node that must exist with the uid given. Nothing is stored.
 */
import type { V1StatusCause } from "@kubernetes/client-node";
import { findResource } from "../../../api/resources.ts";
import { ApiError, badRequest, invalid } from "../../../api/status.ts";
import { FieldPath, invalidValue, notSupported } from "../../../api/validation/field.ts";
import type { KObject, Registry } from "../../registry.ts";
import type { ServiceAccountTokens } from "../../serviceaccount/tokens.ts";
import { isObject } from "../body.ts";

const SERVICE_ACCOUNTS = findResource("", "v1", "serviceaccounts")!;
const BOUND_KINDS = {
  Pod: findResource("", "v1", "pods")!,
  Secret: findResource("", "v1", "secrets")!,
  Node: findResource("", "v1", "nodes")!,
} as const;
const DEFAULT_SECONDS = 3600;
const MIN_SECONDS = 600;
const MAX_SECONDS = 2 ** 32;
const SPEC = FieldPath.root("spec");

const GROUP = "authentication.k8s.io";

export async function requestToken(
  registry: Registry,
  tokens: ServiceAccountTokens | undefined,
  namespace: string,
  name: string,
  body: KObject,
  dryRun: boolean,
): Promise<Record<string, unknown>> {
  if (!tokens)
    throw new ApiError(
      503,
      "ServiceUnavailable",
      "this server has no service-account signing key: tokens cannot be issued",
    );
  if (body.metadata.name !== undefined && body.metadata.name !== name)
    throw badRequest("name in URL does not match name in TokenRequest object");
  const spec = isObject(body.spec) ? body.spec : {};
  const causes: V1StatusCause[] = [];
  const seconds = spec.expirationSeconds ?? DEFAULT_SECONDS;
  if (typeof seconds !== "number" || !Number.isInteger(seconds))
    causes.push(invalidValue(SPEC.child("expirationSeconds"), seconds, "must be an integer"));
  else if (seconds < MIN_SECONDS)
    causes.push(
      invalidValue(
        SPEC.child("expirationSeconds"),
        seconds,
        "may not specify a duration less than 10 minutes",
      ),
    );
  else if (seconds > MAX_SECONDS)
    causes.push(
      invalidValue(
        SPEC.child("expirationSeconds"),
        seconds,
        "may not specify a duration larger than 2^32 seconds",
      ),
    );
  const audiences = Array.isArray(spec.audiences) ? spec.audiences : [];
  audiences.forEach((a, i) => {
    if (typeof a !== "string" || a === "")
      causes.push(invalidValue(SPEC.child("audiences").index(i), a, "must be a non-empty string"));
  });
  const ref = isObject(spec.boundObjectRef) ? spec.boundObjectRef : undefined;
  if (ref && !(typeof ref.kind === "string" && ref.kind in BOUND_KINDS))
    causes.push(
      notSupported(SPEC.child("boundObjectRef").child("kind"), ref.kind ?? "", Object.keys(BOUND_KINDS)),
    );
  if (causes.length) throw invalid("TokenRequest", name, causes, GROUP);
  const sa = await registry.get(SERVICE_ACCOUNTS, namespace, name);
  let bound: { kind: keyof typeof BOUND_KINDS; name: string; uid: string } | undefined;
  if (ref) {
    const kind = ref.kind as keyof typeof BOUND_KINDS;
    const info = BOUND_KINDS[kind];
    const refName = typeof ref.name === "string" ? ref.name : "";
    const target = await registry.get(info, info.namespaced ? namespace : undefined, refName);
    const uid = target.metadata.uid ?? "";
    if (typeof ref.uid === "string" && ref.uid !== "" && ref.uid !== uid)
      throw new ApiError(
        409,
        "Conflict",
        `the UID in the bound object reference (${ref.uid}) does not match the UID in record. The object might have been deleted and then recreated`,
      );
    if (kind === "Pod") {
      const podSa =
        (target.spec as { serviceAccountName?: string } | undefined)?.serviceAccountName || "default";
      if (podSa !== name)
        throw badRequest(
          `cannot bind token to a pod "${refName}" that does not use service account "${name}"`,
        );
    }
    bound = { kind, name: refName, uid };
  }
  const { token, claims } = tokens.issue({
    namespace,
    name,
    uid: sa.metadata.uid ?? "",
    audiences: audiences as string[],
    expirationSeconds: seconds as number,
    ...(bound ? { bound } : {}),
  });
  void dryRun; // nothing is stored either way
  return {
    kind: "TokenRequest",
    apiVersion: `${GROUP}/v1`,
    metadata: {
      name,
      namespace,
      creationTimestamp: new Date(claims.iat * 1000).toISOString().replace(/\.\d+Z$/, "Z"),
    },
    spec: {
      audiences: claims.aud,
      expirationSeconds: seconds,
      boundObjectRef: ref ? { ...ref, uid: bound?.uid } : null,
    },
    status: {
      token,
      expirationTimestamp: new Date(claims.exp * 1000).toISOString().replace(/\.\d+Z$/, "Z"),
    },
  };
}
