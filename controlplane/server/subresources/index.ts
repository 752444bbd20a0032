import { ApiError } from "../../../api/status.ts";
import { SUBRESOURCES, type Route } from "../request-info.ts";

/** 404 for a subresource lab-server does not serve, or one this kind does not have. */
export function checkSubresource(r: Route): void {
  const { info, subresource } = r;
  if (subresource === undefined) return;
  if (!SUBRESOURCES.includes(subresource)) {
    throw new ApiError(
      404,
      "NotFound",
      `the server could not find the requested resource (${info.plural}/${subresource})`,
    );
  }
  if (subresource === "status" && !info.status)
    throw new ApiError(404, "NotFound", `${info.plural} have no status subresource`);
  if (subresource === "scale" && !info.scale)
    throw new ApiError(404, "NotFound", `${info.plural} have no scale subresource`);
  if (info.kind !== "Pod" && ["log", "exec", "attach", "portforward", "eviction"].includes(subresource))
    throw new ApiError(404, "NotFound", `${info.plural} have no ${subresource} subresource`);
  if (info.kind !== "ServiceAccount" && subresource === "token")
    throw new ApiError(404, "NotFound", `${info.plural} have no ${subresource} subresource`);
}

export { bind } from "./binding.ts";
export { evict } from "./eviction.ts";
export { servePodStream, serveUpgrade } from "./pods.ts";
export { toScale, writeScale } from "./scale.ts";
export { requestToken } from "./token.ts";
