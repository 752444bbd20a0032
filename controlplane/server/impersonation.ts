/**
 * User impersonation (kube-apiserver's WithImpersonation): `Impersonate-User` and
 * `Impersonate-Group` headers make the request act as another identity when the caller may
 * `impersonate` each of them (users, groups, or serviceaccounts in their namespace).
 */
import type { IncomingMessage } from "node:http";
import { ApiError } from "../../api/status.ts";
import {
  authorize,
  forbidden,
  resourceInfoFor,
  type Attributes,
  type NodeGraph,
  type UserInfo,
} from "../authz.ts";
import { serviceAccountOf } from "../rbac/rules.ts";

function values(req: IncomingMessage, name: string): string[] {
  const all = req.headersDistinct[name];
  return (all ?? []).map((v) => v.trim()).filter((v) => v !== "");
}

/** The identity the request acts as: `user` itself without impersonation headers. */
export async function impersonate(req: IncomingMessage, user: UserInfo, graph: NodeGraph): Promise<UserInfo> {
  const names = values(req, "impersonate-user");
  const groups = values(req, "impersonate-group");
  const uids = values(req, "impersonate-uid");
  const extras = Object.keys(req.headers).filter((h) => h.startsWith("impersonate-extra-"));
  if (names.length === 0) {
    if (groups.length || uids.length || extras.length)
      throw new ApiError(
        500,
        "InternalError",
        "Internal error occurred: requested impersonation of groups, uid or extra without impersonating a user",
      );
    return user;
  }
  if (names.length > 1)
    throw new ApiError(400, "BadRequest", "only one Impersonate-User header may be given");
  const name = names[0]!;
  const check = async (a: Attributes): Promise<void> => {
    const d = await authorize(user, a, graph);
    if (!d.allowed) throw forbidden(a, d.reason);
  };
  const sa = serviceAccountOf(name);
  if (sa)
    await check({
      verb: "impersonate",
      info: resourceInfoFor("", "serviceaccounts", true),
      namespace: sa[0],
      name: sa[1],
    });
  else await check({ verb: "impersonate", info: resourceInfoFor("", "users", false), name });
  for (const g of groups)
    await check({ verb: "impersonate", info: resourceInfoFor("", "groups", false), name: g });
  for (const uid of uids)
    await check({
      verb: "impersonate",
      info: resourceInfoFor("authentication.k8s.io", "uids", false),
      name: uid,
    });
  for (const h of extras) {
    const key = h.slice("impersonate-extra-".length);
    for (const v of values(req, h))
      await check({
        verb: "impersonate",
        info: resourceInfoFor("authentication.k8s.io", "userextras", false),
        subresource: key,
        name: v,
      });
  }
  const out = [...groups];
  // A service account without groups asked for gets its own, as upstream does.
  if (sa && groups.length === 0) out.push("system:serviceaccounts", `system:serviceaccounts:${sa[0]}`);
  if (name !== "system:anonymous" && !out.includes("system:authenticated")) out.push("system:authenticated");
  if (name === "system:anonymous" && !out.includes("system:unauthenticated"))
    out.push("system:unauthenticated");
  return { name, groups: out };
}
