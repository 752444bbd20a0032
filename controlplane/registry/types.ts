import { randomBytes } from "node:crypto";
import type { ResourceInfo } from "../../api/resources.ts";
import type { LabelRequirement, FieldRequirement } from "../../api/selectors.ts";
import { alreadyExists, conflict, gone, notFound } from "../../api/status.ts";
import { StoreError } from "../storage/etcd-store.ts";

/** A served object as stored: plain JSON with Kubernetes metadata. */
export type KObject = Record<string, unknown> & { metadata: Meta };
export interface Meta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: unknown[];
  managedFields?: unknown;
  [k: string]: unknown;
}

export interface WatchEvent {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: Record<string, unknown>;
}

export interface Selectors {
  labels: LabelRequirement[];
  fields: FieldRequirement[];
}

export interface DeleteOptions {
  gracePeriodSeconds?: number;
  propagationPolicy?: string;
  preconditions?: { uid?: string; resourceVersion?: string };
  dryRun?: boolean;
}

/**
 * Which part of an object an update writes: everything but status ("main"), only status, or, for
 * a pod's binding, the whole object where spec.nodeName may be set once.
 */
export type UpdateMode = "main" | "status" | "binding";

export const SYSTEM_NAMESPACES = ["default", "kube-system", "kube-public", "kube-node-lease"];

export function storageKey(info: ResourceInfo, namespace: string | undefined, name?: string): string {
  const base = `/registry/${info.plural}/`;
  if (!info.namespaced) return name === undefined ? base : base + name;
  if (namespace === undefined) return base;
  return name === undefined ? `${base}${namespace}/` : `${base}${namespace}/${name}`;
}

export function withVersion(obj: KObject, modRevision: number): KObject {
  obj.metadata.resourceVersion = String(modRevision);
  return obj;
}

/** A timestamp as Kubernetes writes them (seconds, UTC). */
export { timestamp } from "../../lib/time.ts";

const NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789";
export function randomSuffix(): string {
  return [...randomBytes(5)].map((b) => NAME_CHARS[b % NAME_CHARS.length]).join("");
}

/**
 * Conflicts that came from a compare-and-swap losing to another write. guaranteedUpdate retries
 * these; a conflict with a resourceVersion the client sent goes back to the client.
 */
const writeConflicts = new WeakSet<object>();

export function isWriteConflict(err: unknown): boolean {
  return typeof err === "object" && err !== null && writeConflicts.has(err);
}

export function mapStoreError(err: unknown, info: ResourceInfo, name: string): never {
  if (err instanceof StoreError) {
    if (err.reason === "Conflict") {
      const c = conflict(info.plural, name, info.group);
      writeConflicts.add(c);
      throw c;
    }
    if (err.reason === "NotFound") throw notFound(info.plural, name, info.group);
    if (err.reason === "AlreadyExists") throw alreadyExists(info.plural, name, info.group);
    if (err.reason === "Compacted") throw gone(err.message);
  }
  throw err;
}

/** Thrown by a step on the watch cache's copy that would answer with it unchanged: read etcd's. */
export const FROM_ETCD = new Error("read the object from etcd");
