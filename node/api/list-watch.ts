/**
 * A minimal reflector: list, then watch from the list's resourceVersion, relist on 410 Gone or
 * any error (after a short back-off), and hand the FULL current set to `onChange` after every
 * change. (The shared informer in api/ was not on main yet when the agent was written.)
 */
import { ApiStatusError, type Plural, type ResourceTypes } from "../../api/client.ts";
import type { FailoverClient } from "./failover.ts";

type Meta = { metadata?: { name?: string; namespace?: string; resourceVersion?: string } };

export interface ListWatchOptions<T> {
  fieldSelector?: string;
  signal: AbortSignal;
  onChange(items: T[]): void;
  onError?(err: unknown): void;
  /** Server-side watch timeout; a new watch resumes from the last resourceVersion. */
  watchTimeoutSeconds?: number;
}

const key = (o: Meta): string => `${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/** Runs until the signal aborts. */
export async function listWatch<P extends Plural>(
  client: FailoverClient,
  plural: P,
  o: ListWatchOptions<ResourceTypes[P]>,
): Promise<void> {
  const items = new Map<string, ResourceTypes[P]>();
  let backoff = 250;
  while (!o.signal.aborted) {
    try {
      const list = await client.list(plural, o.fieldSelector ? { fieldSelector: o.fieldSelector } : {});
      items.clear();
      for (const it of list.items) items.set(key(it as Meta), it);
      o.onChange([...items.values()]);
      let rv = list.metadata.resourceVersion;
      while (!o.signal.aborted) {
        const events = client.watch(plural, {
          fieldSelector: o.fieldSelector,
          resourceVersion: rv,
          allowWatchBookmarks: true,
          timeoutSeconds: o.watchTimeoutSeconds ?? 300,
          signal: o.signal,
        });
        for await (const ev of events) {
          const obj = ev.object as Meta;
          rv = obj.metadata?.resourceVersion ?? rv;
          backoff = 250;
          if (ev.type === "BOOKMARK") continue;
          if (ev.type === "DELETED") items.delete(key(obj));
          else items.set(key(obj), ev.object);
          o.onChange([...items.values()]);
        }
      }
    } catch (err) {
      if (o.signal.aborted) return;
      // 410: our resourceVersion was compacted away; relisting is the normal answer.
      if (!(err instanceof ApiStatusError && err.code === 410)) o.onError?.(err);
      await sleep(backoff, o.signal);
      backoff = Math.min(backoff * 2, 5000);
    }
  }
}
