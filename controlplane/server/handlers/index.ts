import type { RequestContext } from "../context.ts";
import type { Verb } from "../request-info.ts";
import { create } from "./create.ts";
import { deleteCollection, deleteOne } from "./delete.ts";
import { get } from "./get.ts";
import { list } from "./list.ts";
import { patch } from "./patch.ts";
import { update } from "./update.ts";
import { watch } from "./watch.ts";

/** One handler per verb. */
export const HANDLERS: Record<Verb, (ctx: RequestContext) => Promise<void>> = {
  get,
  list,
  watch,
  create,
  update,
  patch,
  delete: deleteOne,
  deletecollection: deleteCollection,
};
