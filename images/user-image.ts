/** A user-supplied cloud image (`spec.image: ./x.qcow2`): checked and described, never modified. */
import { stat } from "node:fs/promises";
import { existsSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { execa } from "execa";
import { LabError } from "../topology/errors.ts";

export interface UserImage {
  path: string;
  /** As `qemu-img info` reports it: qcow2, raw, ... */
  format: string;
  size: number;
  mtimeMs: number;
}

export async function inspectUserImage(image: string): Promise<UserImage> {
  const path = isAbsolute(image) ? image : resolve(image);
  if (!existsSync(path)) {
    throw new LabError({
      code: "IMAGE_NOT_FOUND",
      what: `image file ${path} does not exist`,
      where: "spec.image",
      fix: "give the path of a cloud image with cloud-init (qcow2 or raw), or debian-12 for the built-in image",
    });
  }
  const info = JSON.parse((await execa("qemu-img", ["info", "--output=json", path])).stdout) as {
    format: string;
  };
  const st = await stat(path);
  return { path, format: info.format, size: st.size, mtimeMs: st.mtimeMs };
}
