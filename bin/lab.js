#!/usr/bin/env node
// Entry point of the `lab` command: runs the TypeScript sources through tsx's loader, so a
// checkout works after `npm ci` with no build step.
import { register } from "tsx/esm/api";

register();
await import("../cli/main.ts");
