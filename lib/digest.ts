/** sha256 digests in hex, of data and of files (streamed). */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";

export const sha256 = (data: Buffer | string): string => createHash("sha256").update(data).digest("hex");

export async function sha256OfFile(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest("hex");
}
