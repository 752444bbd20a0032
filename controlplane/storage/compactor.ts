import type { EtcdStore } from "./etcd-store.ts";

/** The key whose version counts compaction rounds across every apiserver (kube-apiserver's name). */
export const COMPACT_REV_KEY = "compact_rev_key";

/** What one apiserver's compactor remembers between rounds. */
export interface CompactorState {
  /** The version of COMPACT_REV_KEY this apiserver last saw. */
  version: number;
  /** etcd's revision at the last round: the next round compacts to it. */
  revision: number;
}

/**
 * One round of kube-apiserver's compactor (storage/etcd3/compact.go), safe with any number of
 * apiservers: a transaction bumps COMPACT_REV_KEY only if its version is still the one this
 * apiserver saw last round. The one that wins compacts to the revision it saw one interval earlier,
 * so every watcher had a full interval to catch up; the others just learn the version and wait.
 * Compacting a revision someone compacted already is harmless (EtcdStore.compact).
 */
export async function compactRound(store: EtcdStore, state: CompactorState): Promise<CompactorState> {
  const res = await store.client
    .if(COMPACT_REV_KEY, "Version", "==", state.version)
    .then(store.client.put(COMPACT_REV_KEY).value(String(state.revision)))
    .else(store.client.get(COMPACT_REV_KEY))
    .commit();
  const revision = Number(res.header.revision);
  if (!res.succeeded) {
    const version = Number(res.responses[0]?.response_range?.kvs?.[0]?.version ?? 0);
    return { version, revision };
  }
  // The first round only takes part: nothing was seen an interval ago.
  if (state.revision > 0) await store.compact(state.revision);
  return { version: state.version + 1, revision };
}

/**
 * Runs compactRound every intervalMs until the returned function is called; 0 = never (as
 * kube-apiserver's --etcd-compaction-interval=0). A failed round is logged and retried next time.
 */
export function startCompactor(
  store: EtcdStore,
  intervalMs: number,
  log: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): () => void {
  if (intervalMs <= 0) return () => undefined;
  let state: CompactorState = { version: 0, revision: 0 };
  let running = false;
  const timer = setInterval(() => {
    if (running) return; // a round stuck on etcd does not pile up more
    running = true;
    compactRound(store, state)
      .then((next) => void (state = next))
      .catch((err: unknown) => log(`etcd compaction failed (retried in ${intervalMs} ms): ${String(err)}`))
      .finally(() => (running = false));
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
