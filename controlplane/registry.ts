/** The API's object semantics over etcd: the generic store and one strategy per kind (./registry/). */
export { Registry, type GuaranteedUpdateOptions } from "./registry/store.ts";
export {
  storageKey,
  SYSTEM_NAMESPACES,
  type DeleteOptions,
  type KObject,
  type Meta,
  type Selectors,
  type UpdateMode,
  type WatchEvent,
} from "./registry/types.ts";
