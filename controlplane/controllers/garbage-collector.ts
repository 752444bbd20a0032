/**
 * The garbage collector loop: objects whose owners are gone are deleted; owners deleted in the
 * foreground wait for their dependents; owners deleted with orphaning release them. Owners are
 * looked up by uid in the watched caches, and an owner that looks absent is confirmed with a live
 * GET before anything is deleted (the owner's cache may simply lag).
 */
import type { KubeObject } from "../../api/informer.ts";
import type { Informer } from "../../api/informer.ts";
import { objectKey } from "../../api/informer.ts";
import { WorkQueue } from "../../api/workqueue.ts";
import { runController } from "../../api/controller.ts";
import type { ObjectWriter, Resource } from "../loop-client.ts";
import { isConflict, isNotFound } from "../loop-client.ts";
import type { GcObject, OwnerState } from "./gc-decision.ts";
import { dependentAction, ownerFinalizerToRemove, ownerState } from "./gc-decision.ts";

/** Kind → resource for the kinds the collector watches (owners of other kinds are left alone). */
export type GcSources = Partial<
  Record<string, { resource: Resource; informer: Informer<GcObject & KubeObject> }>
>;

export class GarbageCollector {
  readonly queue = new WorkQueue({ baseDelayMs: 100, maxDelayMs: 30_000 });
  private byUid = new Map<string, { kind: string; key: string }>();
  /** owner uid → keys of dependents ("Kind|ns/name"). */
  private dependents = new Map<string, Set<string>>();

  constructor(
    private readonly sources: GcSources,
    private readonly w: ObjectWriter,
    private readonly onError?: (err: unknown) => void,
  ) {
    for (const [kind, src] of Object.entries(sources)) {
      if (!src) continue;
      src.informer.on({
        add: (o) => this.seen(kind, o),
        update: (_o, n) => this.seen(kind, n),
        delete: (o) => this.gone(kind, o),
      });
    }
  }

  /** Indexes an object by uid and by its owners' uids, and queues it. */
  private seen(kind: string, o: GcObject): void {
    const item = `${kind}|${objectKey(o)}`;
    const uid = o.metadata?.uid;
    if (uid) this.byUid.set(uid, { kind, key: objectKey(o) });
    for (const r of o.metadata?.ownerReferences ?? []) {
      let s = this.dependents.get(r.uid);
      if (!s) this.dependents.set(r.uid, (s = new Set()));
      s.add(item);
    }
    this.queue.add(item);
  }

  private gone(kind: string, o: GcObject): void {
    const item = `${kind}|${objectKey(o)}`;
    const uid = o.metadata?.uid;
    if (uid) this.byUid.delete(uid);
    for (const r of o.metadata?.ownerReferences ?? []) {
      this.dependents.get(r.uid)?.delete(item);
      this.queue.add(`uid|${r.uid}`); // an owner waiting for it may finish now
    }
    // Its dependents may now be orphans.
    for (const d of this.dependents.get(uid ?? "") ?? []) this.queue.add(d);
  }

  run(signal: AbortSignal, workers = 2): Promise<void> {
    // The informers listed before this collector subscribed: index what they hold.
    for (const [kind, src] of Object.entries(this.sources))
      for (const o of src?.informer.cache.values() ?? []) this.seen(kind, o);
    return runController(signal, {
      queue: this.queue,
      reconcile: (k) => this.reconcile(k),
      workers,
      onError: this.onError,
    });
  }

  private lookup(kind: string, key: string): GcObject | undefined {
    return this.sources[kind]?.informer.get(key);
  }

  private dependentsOf(uid: string): GcObject[] {
    const out: GcObject[] = [];
    for (const d of this.dependents.get(uid) ?? []) {
      const [kind, key] = d.split("|") as [string, string];
      const o = this.lookup(kind, key);
      if (o?.metadata?.ownerReferences?.some((r) => r.uid === uid)) out.push(o);
    }
    return out;
  }

  async reconcile(item: string): Promise<void> {
    const [kind, key] = item.split("|") as [string, string];
    if (kind === "uid") {
      const o = this.byUid.get(key);
      if (o) this.queue.add(`${o.kind}|${o.key}`);
      return;
    }
    const src = this.sources[kind];
    const obj = this.lookup(kind, key);
    if (!src || !obj) return;
    const ns = obj.metadata?.namespace;
    const name = obj.metadata?.name ?? "";
    // As an owner being deleted: drop the finalizer when its dependents allow it.
    if (obj.metadata?.deletionTimestamp) {
      const deps = this.dependentsOf(obj.metadata.uid ?? "");
      const fin = ownerFinalizerToRemove(obj, deps);
      if (fin) {
        const finalizers = (obj.metadata.finalizers ?? []).filter((f) => f !== fin);
        await this.quiet(() =>
          this.w.update(src.resource, ns, { ...obj, metadata: { ...obj.metadata, finalizers } }),
        );
      }
      for (const d of this.dependents.get(obj.metadata.uid ?? "") ?? []) this.queue.add(d);
    }
    // As a dependent.
    const refs = obj.metadata?.ownerReferences ?? [];
    if (refs.length === 0) return;
    const states = new Map<string, OwnerState>();
    for (const r of refs) {
      const ownerSrc = this.sources[r.kind];
      if (!ownerSrc) {
        states.set(r.uid, "unknown");
        continue;
      }
      const ownerKey = ns ? `${ns}/${r.name}` : r.name;
      let owner = ownerSrc.informer.get(ownerKey);
      if (owner?.metadata?.uid !== r.uid) owner = undefined;
      if (!owner) {
        // Confirm with the server before believing the owner is gone.
        const live = await this.w.get<GcObject & KubeObject>(ownerSrc.resource, ns, r.name);
        owner = live?.metadata?.uid === r.uid ? live : undefined;
      }
      states.set(r.uid, ownerState(owner, true));
    }
    const action = dependentAction(obj, states);
    if (action.action === "delete")
      await this.quiet(() =>
        this.w.delete(src.resource, ns, name, {
          propagationPolicy: action.propagation,
          uid: obj.metadata?.uid,
        }),
      );
    else if (action.action === "removeOwners") {
      const ownerReferences = refs.filter((r) => !action.uids.includes(r.uid));
      await this.quiet(() =>
        this.w.update(src.resource, ns, { ...obj, metadata: { ...obj.metadata, ownerReferences } }),
      );
      for (const uid of action.uids) this.queue.add(`uid|${uid}`);
    }
  }

  /** Conflicts and not-found mean our view is behind; the watch brings the newer object. */
  private async quiet(f: () => Promise<unknown>): Promise<void> {
    try {
      await f();
    } catch (err) {
      if (!isConflict(err) && !isNotFound(err)) throw err;
    }
  }
}
