/**
 * lab-server's Kubernetes-compatible API. The parts live in controlplane/server/: the server and
 * authentication, request info, body, one handler per verb, subresources, and the one error
 * boundary every request runs inside. This module keeps the public names in one place.
 */
export { ApiServer, type ApiServerOptions } from "./server/server.ts";
export { MAX_BODY_BYTES } from "./server/body.ts";
export { parseResourcePath } from "./server/request-info.ts";
export { notFound } from "../api/status.ts";
