import type { V1StatusCause } from "@kubernetes/client-node";
import { applyDefaults } from "../../api/defaults.ts";
import { hasSpec, type ResourceInfo } from "../../api/resources.ts";
import { validateObject, validateObjectUpdate } from "../../api/validation.ts";
import type { EtcdStore } from "../storage/etcd-store.ts";
import type { NodePortAllocator, ServiceIpAllocator } from "../service-ips.ts";
import type { DeleteOptions, KObject, UpdateMode } from "./types.ts";

/** What strategies may reach: the storage and the allocators behind Services. */
export interface StrategyContext {
  store: EtcdStore;
  serviceIps: ServiceIpAllocator;
  nodePorts: NodePortAllocator;
  /** Runs the kind's afterDelete for an object removed outside the store's delete (namespace purge). */
  afterDelete(info: ResourceInfo, obj: KObject): Promise<void>;
}

/** Undoes what a hook claimed when the write it prepared for does not happen. */
export type Rollback = () => Promise<void>;
export const NOTHING: Rollback = () => Promise.resolve();

/**
 * One kind's semantics around the generic store, as in kube-apiserver's rest.RESTCreateStrategy /
 * RESTUpdateStrategy / RESTDeleteStrategy: the store does identity, versions and storage; the
 * strategy says what a create or update may set, what is valid, and what the kind holds outside
 * its object (cluster IPs, node ports).
 */
export class Strategy {
  constructor(readonly info: ResourceInfo) {}

  /** Whether spec changes bump metadata.generation. */
  get bumpsGeneration(): boolean {
    return hasSpec(this.info);
  }

  /** Clears what a client may not set on create (e.g. a pod's status). */
  prepareForCreate(_obj: KObject): void {}

  /** Checks and carries over what an update may not change; runs before defaulting. */
  prepareForUpdate(_obj: KObject, _old: KObject, _mode: UpdateMode): void {}

  defaults(obj: KObject): void {
    applyDefaults(this.info.kind, obj);
  }

  validate(obj: KObject): V1StatusCause[] {
    return validateObject(this.info.kind, obj, this.info.namespaced);
  }

  validateUpdate(obj: KObject, old: KObject): V1StatusCause[] {
    return validateObjectUpdate(this.info.kind, obj, old, this.info.namespaced);
  }

  /** Claims what a new object holds outside etcd; the rollback runs when the create fails. */
  beforeCreate(_obj: KObject, _dryRun: boolean): Promise<Rollback> {
    return Promise.resolve(NOTHING);
  }

  /** As beforeCreate, for an update about to be written. */
  beforeUpdate(_obj: KObject, _old: KObject, _mode: UpdateMode): Promise<Rollback> {
    return Promise.resolve(NOTHING);
  }

  /** After an update was written: frees what `old` held and `obj` no longer does. */
  afterUpdate(_obj: KObject, _old: KObject): Promise<void> {
    return Promise.resolve();
  }

  /** After the object left etcd. */
  afterDelete(_obj: KObject): Promise<void> {
    return Promise.resolve();
  }

  /**
   * Seconds a delete waits before the object goes (graceful deletion), or "unchanged" when it is
   * already terminating with a grace at least as short.
   */
  gracePeriod(_obj: KObject, _opts: DeleteOptions): number | "unchanged" {
    return 0;
  }

  /** Whether an object with a deletionTimestamp and no finalizers still waits (a pod's grace). */
  waitsAfterFinalizers(_old: KObject): boolean {
    return false;
  }

  /** A kind whose delete is its own (namespaces) answers here; undefined means the generic one. */
  delete?(current: KObject, opts: DeleteOptions, ctx: StrategyContext): Promise<KObject>;
}
