/**
 * Adapters from the typed REST client (api/client.ts) to what the control loops ask for:
 * writes and the Lease store of leader election (list+watch: api/list-watch.ts).
 */
import type { V1Lease } from "@kubernetes/client-node";
import type { LabClient, Plural, ResourceTypes } from "../api/client.ts";
import { clientListWatch } from "../api/list-watch.ts";
import type { KubeObject } from "../api/informer.ts";
import type { LeaseStore } from "../api/leader-election.ts";
import type { LoopClient } from "./local-client.ts";
import type { ObjectWriter, Resource } from "./loop-client.ts";
import { isNotFound } from "./loop-client.ts";

type Obj = ResourceTypes[Plural];

/** Everything the loops read and write through, over one client: list+watch, writes and Leases. */
export function clientLoops(c: LabClient): LoopClient {
  return { lw: clientListWatch(c), writer: clientWriter(c), leases: clientLeaseStore(c) };
}

export function clientWriter(c: LabClient): ObjectWriter {
  return {
    async get<T extends KubeObject>(resource: Resource, namespace: string | undefined, name: string) {
      try {
        return (await c.get(resource as Plural, name, namespace)) as unknown as T;
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
    async create<T extends KubeObject>(resource: Resource, namespace: string | undefined, obj: T) {
      return (await c.create(resource as Plural, obj as unknown as Obj, namespace)) as unknown as T;
    },
    async update<T extends KubeObject>(resource: Resource, _ns: string | undefined, obj: T) {
      return (await c.update(resource as Plural, obj as unknown as Obj)) as unknown as T;
    },
    async updateStatus<T extends KubeObject>(resource: Resource, _ns: string | undefined, obj: T) {
      return (await c.updateStatus(resource as Plural, obj as unknown as Obj)) as unknown as T;
    },
    async delete(resource, namespace, name, opts = {}) {
      await c.delete(resource as Plural, name, namespace, {
        ...(opts.propagationPolicy ? { propagationPolicy: opts.propagationPolicy } : {}),
        ...(opts.uid ? { preconditions: { uid: opts.uid } } : {}),
      });
    },
    bind: (namespace, pod, node) => c.bind(namespace, pod, node),
  };
}

export function clientLeaseStore(c: LabClient): LeaseStore {
  return {
    async get(namespace, name) {
      try {
        return await c.get("leases", name, namespace);
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
    create: (lease: V1Lease) => c.create("leases", lease),
    update: (lease: V1Lease) => c.update("leases", lease),
  };
}
