import { Strategy } from "../strategy.ts";
import type { KObject } from "../types.ts";

/**
 * Secrets: `stringData` is write-only, merged into `data` (base64) on every write, its entries
 * winning over data's, as Kubernetes does.
 */
export class SecretStrategy extends Strategy {
  private mergeStringData(obj: KObject): void {
    const plain = obj.stringData;
    if (plain === undefined || plain === null) return;
    if (typeof plain !== "object" || Array.isArray(plain)) return; // validation names the type
    const entries = Object.entries(plain as Record<string, unknown>);
    if (entries.some(([, v]) => typeof v !== "string")) return;
    const data = (obj.data && typeof obj.data === "object" ? obj.data : {}) as Record<string, unknown>;
    for (const [k, v] of entries) data[k] = Buffer.from(v as string, "utf8").toString("base64");
    obj.data = data;
    delete obj.stringData;
  }

  override prepareForCreate(obj: KObject): void {
    this.mergeStringData(obj);
  }

  override prepareForUpdate(obj: KObject): void {
    this.mergeStringData(obj);
  }
}
