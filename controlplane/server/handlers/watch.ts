import { groupVersion } from "../../../api/resources.ts";
import type { ApiError } from "../../../api/status.ts";
import { toTable } from "../../../api/table.ts";
import type { KObject, WatchEvent } from "../../registry.ts";
import { objectJson } from "../../registry/object-json.ts";
import { wantsTable, type RequestContext } from "../context.ts";
import { intParam, resourceVersionParam, selectors } from "../query.ts";
import { toApiError } from "../reply.ts";

const DEFAULT_TIMEOUT_S = 1800;
/** setTimeout's ceiling (a larger delay fires at once). */
const MAX_TIMEOUT_S = Math.floor(2 ** 31 / 1000) - 1;

/**
 * A watch: headers go out once the store watch runs, then one JSON event per line. It ends exactly
 * once, whoever ends it first: the client leaving, the timeout, the store (an ERROR event), stop().
 */
export async function watch(ctx: RequestContext): Promise<void> {
  const { route: r, q, reply, registry } = ctx;
  const { info } = r;
  const sel = selectors(q);
  const resourceVersion = resourceVersionParam(q);
  const requested = intParam(q, "timeoutSeconds");
  const timeoutSeconds =
    requested === undefined || requested <= 0 ? DEFAULT_TIMEOUT_S : Math.min(requested, MAX_TIMEOUT_S);
  const table = wantsTable(ctx.req);
  const includeObject = q.get("includeObject") ?? undefined;
  const bookmarks = q.get("allowWatchBookmarks") === "true";
  let first = true;
  let ended = false;
  const write = (ev: WatchEvent): void => {
    if (ended) return;
    if (table && (ev.type === "ADDED" || ev.type === "MODIFIED" || ev.type === "DELETED")) {
      const t = toTable(info.kind, [ev.object as KObject], { includeObject });
      if (!first) t.columnDefinitions = [];
      first = false;
      reply.line({ type: ev.type, object: t });
    } else if (ev.type === "BOOKMARK") reply.line({ type: ev.type, object: ev.object });
    else reply.rawLine(`{"type":${JSON.stringify(ev.type)},"object":${objectJson(ev.object as KObject)}}`);
  };
  // Filled in once the store watch runs; `end` may come before that (client gone, 410).
  const running: { stop?: () => Promise<void>; timer?: NodeJS.Timeout; bookmarks?: NodeJS.Timeout } = {};
  const cleanup = (): void => {
    ended = true;
    ctx.server.watches.delete(end);
    clearTimeout(running.timer);
    clearInterval(running.bookmarks);
    void running.stop?.().catch(() => undefined);
  };
  const end = (err?: ApiError): void => {
    if (ended) return;
    cleanup();
    if (err) {
      reply.line({ type: "ERROR", object: err.toStatus() });
    }
    reply.end();
  };
  ctx.server.watches.add(end);
  ctx.req.once("close", () => end());
  reply.res.once("close", () => end());
  let handle;
  try {
    handle = await registry.watch(info, r.namespace, sel, resourceVersion, write, end);
  } catch (err) {
    const status = toApiError(err);
    // Gone (410) is an event on an established watch, as Kubernetes sends it; so is anything
    // after the first events went out. Otherwise the boundary answers with a plain Status.
    if (status.code === 410 || reply.headersSent) {
      end(status);
      return;
    }
    cleanup();
    throw status;
  }
  running.stop = handle.stop;
  if (ended) {
    void handle.stop().catch(() => undefined);
    return;
  }
  reply.startStream();
  running.timer = setTimeout(() => end(), timeoutSeconds * 1000);
  if (bookmarks) {
    const h = handle;
    running.bookmarks = setInterval(() => {
      write({
        type: "BOOKMARK",
        object: {
          kind: info.kind,
          apiVersion: groupVersion(info),
          metadata: { resourceVersion: String(h.lastRevision()) },
        },
      });
    }, ctx.server.bookmarkIntervalMs);
  }
}
