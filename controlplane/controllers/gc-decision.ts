/**
 * Garbage collection through ownerReferences, pure: which dependents to delete or orphan, and when
 * an owner being deleted in the foreground or with orphaning may lose its finalizer.
 */
import type { V1OwnerReference } from "@kubernetes/client-node";

export const FOREGROUND = "foregroundDeletion";
export const ORPHAN = "orphan";

export interface GcObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    deletionTimestamp?: Date | string;
    finalizers?: string[];
    ownerReferences?: V1OwnerReference[];
  };
}

/** How an owner looks from a dependent: absent, present, or being deleted with a finalizer. */
export type OwnerState = "absent" | "present" | "deleting-foreground" | "deleting-orphan" | "unknown";

export function ownerState(owner: GcObject | undefined, known: boolean): OwnerState {
  if (!known) return "unknown";
  if (!owner) return "absent";
  const f = owner.metadata?.finalizers ?? [];
  if (owner.metadata?.deletionTimestamp && f.includes(FOREGROUND)) return "deleting-foreground";
  if (owner.metadata?.deletionTimestamp && f.includes(ORPHAN)) return "deleting-orphan";
  return "present";
}

export type DependentAction =
  | { action: "none" }
  | { action: "delete"; propagation: "Background" | "Foreground" }
  | { action: "removeOwners"; uids: string[] };

/**
 * For one dependent: delete it when all its owners are gone (a dangling reference only is dropped
 * if another owner remains); delete it in the foreground when an owner is being deleted in the
 * foreground; orphan it (drop the reference) when an owner is deleted with orphaning. An owner
 * whose kind is not watched is "unknown" and keeps the dependent.
 */
export function dependentAction(dep: GcObject, owners: Map<string, OwnerState>): DependentAction {
  const refs = dep.metadata?.ownerReferences ?? [];
  if (refs.length === 0 || dep.metadata?.deletionTimestamp) return { action: "none" };
  const states = refs.map((r) => owners.get(r.uid) ?? "unknown");
  const orphanFrom = refs.filter((_r, i) => states[i] === "deleting-orphan").map((r) => r.uid);
  if (orphanFrom.length > 0) return { action: "removeOwners", uids: orphanFrom };
  if (states.some((s) => s === "deleting-foreground")) {
    const others = states.filter((s) => s === "present" || s === "unknown");
    if (others.length === 0) return { action: "delete", propagation: "Foreground" };
    return {
      action: "removeOwners",
      uids: refs.filter((_r, i) => states[i] === "deleting-foreground").map((r) => r.uid),
    };
  }
  if (states.every((s) => s === "absent")) return { action: "delete", propagation: "Background" };
  const dangling = refs.filter((_r, i) => states[i] === "absent").map((r) => r.uid);
  if (dangling.length > 0) return { action: "removeOwners", uids: dangling };
  return { action: "none" };
}

/** The finalizer an owner may drop now: foreground once no dependent that blocks remains; orphan once no dependent refers to it. */
export function ownerFinalizerToRemove(owner: GcObject, dependents: GcObject[]): string | undefined {
  const uid = owner.metadata?.uid;
  const f = owner.metadata?.finalizers ?? [];
  if (!owner.metadata?.deletionTimestamp) return undefined;
  const refs = dependents
    .map((d) => d.metadata?.ownerReferences?.find((r) => r.uid === uid))
    .filter((r) => r !== undefined);
  if (f.includes(ORPHAN) && refs.length === 0) return ORPHAN;
  if (f.includes(FOREGROUND) && !refs.some((r) => r.blockOwnerDeletion)) return FOREGROUND;
  return undefined;
}
