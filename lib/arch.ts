/** The machine architecture in `uname -m` form. */
import { arch } from "node:os";

/** The architecture (`uname -m` form) the shipped Node runtime runs on. */
export function runtimeArch(): string {
  return arch() === "x64" ? "x86_64" : arch() === "arm64" ? "aarch64" : arch();
}
